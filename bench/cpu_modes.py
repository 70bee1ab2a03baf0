"""CPU execution mode: training throughput of fp32 / bf16 autocast x channels-last, and the
mode `precision: auto` picks, per backbone and image size.

Each mode is timed over several training steps on random input; the modes take turns (a
warm-up round, then ``--repeats`` rounds) so that drift and other load hit them alike, and the
median is kept. `auto` then decides with its own short measurement, as a fit would. Figures:
whether auto's pick is the fastest mode measured here, and whether it is within the spread
(min..max over rounds) of the fastest, i.e. indistinguishable from it on this machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from typing import Any

import torch

from bench.common import save

CASES = {
    "quick": [("resnet18", 64), ("mobilenetv3_small_100", 64), ("efficientnet_b0", 64)],
    "full": [
        (b, s) for b in ("resnet18", "mobilenetv3_small_100", "efficientnet_b0") for s in (64, 128)
    ],
}


def measure_case(
    backbone: str, size: int, modes: list[Any], batch: int, repeats: int
) -> dict[str, Any]:
    """Every mode's speed for one backbone and size (turns taken), and what auto picks."""
    from trainer.config import RuntimeConfig
    from trainer.model.backbone import create_probe
    from trainer.runtime import resolve_execution, time_training_step

    model = create_probe(backbone, num_classes=10)
    rounds = [
        {m.describe(): time_training_step(model, m, size, batch, steps=4).steady for m in modes}
        for _ in range(repeats + 1)
    ][1:]  # the first round warms up every mode
    per_mode = {}
    for mode in modes:
        times = sorted(r[mode.describe()] for r in rounds)
        per_mode[mode.describe()] = {
            "images_per_second": batch / times[len(times) // 2],
            "seconds_per_step": times[len(times) // 2],
            "min": times[0],
            "max": times[-1],
        }
    chosen = resolve_execution(RuntimeConfig(device="cpu"), model, size, batch, key=backbone)
    auto = chosen.describe()
    fastest = min(per_mode, key=lambda m: per_mode[m]["seconds_per_step"])
    print(
        f"{backbone} {size}px: "
        + ", ".join(f"{m} {v['images_per_second']:.0f} img/s" for m, v in per_mode.items())
        + f" | auto: {auto} (fastest: {fastest})"
    )
    return {
        "backbone": backbone,
        "image_size": size,
        "modes": per_mode,
        "auto": auto,
        "fastest": fastest,
        "auto_is_fastest": auto == fastest,
        "auto_within_noise": per_mode[auto]["min"] <= per_mode[fastest]["max"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also 128 px")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from trainer.runtime import Execution, cpu_supports_bf16

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()  # auto measures afresh
    cpu = torch.device("cpu")
    modes = [
        Execution(cpu, p, cl)
        for p in (["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"])
        for cl in (False, True)
    ]
    rows = [
        measure_case(backbone, size, modes, args.batch, args.repeats)
        for backbone, size in CASES["full" if args.full else "quick"]
    ]
    save(
        "cpu_modes",
        {
            "mode": "full" if args.full else "quick",
            "batch": args.batch,
            "cases": rows,
            "auto_fastest_share": sum(r["auto_is_fastest"] for r in rows) / len(rows),
            "auto_within_noise_share": sum(r["auto_within_noise"] for r in rows) / len(rows),
        },
    )


if __name__ == "__main__":
    main()
