"""What ``trainer explore`` found, kept per data digest, and the warning training prints from it.

The findings (every image's header facts and hashes, and the duplicate pairs) are a JSON file
beside the split files, ``<split dir>/<digest[:16]>-explore.json``, next to the decode check's
``<digest[:16]>-bad-images.csv``: a later explore of the same data skips the per-image pass,
and ``warning_for`` tells ``trainer fit`` and ``studies run`` about label conflicts and
holdout leakage without looking at an image. Which pairs leak depends on the holdout, so it
is worked out from the split file each time, never stored.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trainer.data.dataset import printable
from trainer.explore.duplicates import describe_pairs

if TYPE_CHECKING:
    from trainer.config import Config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the probe or the pairs change meaning


def findings_path(directory: Path, digest: str) -> Path:
    """The findings file of one dataset."""
    return directory / f"{digest[:16]}-explore.json"


def save_findings(
    path: Path, digest: str, images: pd.DataFrame, pairs: pd.DataFrame, near: int
) -> None:
    """Write the findings atomically (``images`` without its split column)."""
    content = {
        "format": FORMAT_VERSION,
        "digest": digest,
        "near_distance": near,
        "images": images.drop(columns=["split"], errors="ignore").to_dict(orient="list"),
        "pairs": pairs.to_dict(orient="list"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)


def load_findings(path: Path, digest: str) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """``(images, pairs, near_distance)`` stored for ``digest``; None if absent or stale."""
    try:
        content: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if content.get("format") != FORMAT_VERSION or content.get("digest") != digest:
        return None
    images = pd.DataFrame(content["images"])
    images["error"] = images["error"].fillna("")
    pairs = pd.DataFrame(content["pairs"], columns=["kind", "distance", "a", "b"])
    return (
        images,
        pairs.astype({"distance": "int64", "a": "int64", "b": "int64"}),
        content["near_distance"],
    )


def split_names(path: Path) -> dict[str, str]:
    """Printable relative path -> ``test``, a fold number or ``train``, from a split file."""
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return {printable(row["path"]): row["split"] for row in csv.DictReader(handle)}


def assign_splits(images: pd.DataFrame, split_file: Path | None) -> pd.DataFrame:
    """``images`` with a ``split`` column ("" for images outside the split file)."""
    names = split_names(split_file) if split_file is not None and split_file.exists() else {}
    return images.assign(split=[names.get(path, "") for path in images["path"]])


def warning_line(table: pd.DataFrame, target: str) -> str | None:
    """One line about holdout leakage and label conflicts among described pairs, or None."""
    parts = []
    for flag, name, text in (
        ("leakage", "holdout leakage", "link a holdout image to one trained on"),
        ("cross_class", "label conflicts", "are copies under different classes"),
    ):
        chosen = table[table[flag]]
        if len(chosen):
            exact = int((chosen["kind"] == "exact").sum())
            counts = f"{exact} exact, {len(chosen) - exact} near"
            parts.append(f"{name}: {len(chosen)} image pair(s) ({counts}) {text}")
    if not parts:
        return None
    return f"data check: {'; '.join(parts)}; `trainer explore {target}` shows them"


def warning_for(config: Config, digest: str | None = None) -> str | None:
    """One warning line when the explore findings of ``config``'s data include holdout
    leakage or cross-class duplicates (exact or near), else None (also when the data was
    never explored). Pass ``digest`` when it is known, to skip re-reading the files."""
    from trainer.data.splits import split_dir, split_path

    if digest is None:
        from trainer.data.dataset import find_samples
        from trainer.data.scan import fingerprint

        digest = fingerprint(find_samples(config.data.root))
    found = load_findings(findings_path(split_dir(config), digest), digest)
    if found is None:
        return None
    images, pairs, _ = found
    table = describe_pairs(pairs, assign_splits(images, split_path(config, digest)))
    return warning_line(table, "CONFIG.yaml")
