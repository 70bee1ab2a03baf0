"""Progress: a tqdm bar per epoch on a terminal, and one summary line per epoch in the log."""

from __future__ import annotations

import sys
from types import TracebackType

import torch
from tqdm import tqdm


class EpochBar:
    """A progress bar over one epoch's batches showing loss and images per second.

    Draws only on an interactive terminal and when enabled; otherwise it does nothing and the
    per-epoch log line is the only output.
    """

    def __init__(self, total_batches: int, description: str, enabled: bool = True) -> None:
        interactive = enabled and sys.stderr.isatty()
        self._bar = tqdm(
            total=total_batches,
            desc=description,
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=not interactive,
        )
        self._images = 0

    def __call__(self, images: int, loss: torch.Tensor) -> None:
        self._images += images
        self._bar.update(1)
        if not self._bar.disable and self._bar.n % 5 == 0:
            rate = self._images / max(self._bar.format_dict["elapsed"], 1e-9)
            self._bar.set_postfix(loss=f"{float(loss):.4f}", img_s=f"{rate:.0f}", refresh=False)

    def __enter__(self) -> EpochBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.close()
