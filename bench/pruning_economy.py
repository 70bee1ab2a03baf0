"""Pruning economy: the same study (seed, trials, search space) with the default pruner and
with none. Figures: epochs (and seconds) trained with pruning ÷ without, and the best value of
each (target: <= 0.5 of the epochs, best value within 0.5 accuracy points).

Quick mode runs `studies/configs/demo.yaml` (8 trials, tiny models, digits at 16-32 px).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from bench.common import digits_store, save

DEMO = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"


def run_study(root: Path, pruner: dict[str, Any], name: str, trials: int) -> dict[str, float]:
    from mlflow import MlflowClient

    from studies.cli import main as studies
    from studies.report.data import load_study
    from trainer.tracking import tracking_uri

    raw = yaml.safe_load(DEMO.read_text())
    raw["base"]["file"] = str(DEMO.parent / raw["base"]["file"])
    raw["base"]["set"] = [
        *raw["base"]["set"],
        f"data.root={root / 'digits'}",
        f"output.dir={root / 'out'}",
        "runtime.progress=false",
    ]
    raw.update(name=name, n_trials=trials, pruner=pruner)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert studies(["run", str(path), "--storage", str(root / f"{name}.journal")]) == 0
    table = load_study(MlflowClient(tracking_uri()), name).trials
    return {
        "trials": len(table),
        "pruned": int((table["state"] == "PRUNED").sum()),
        "epochs": float(table["epochs_trained"].sum()),
        "seconds": float(table["seconds"].sum()),
        "best_value": float(table["value"].max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with digits_store() as root:
        default = yaml.safe_load(DEMO.read_text())["pruner"]
        pruned = run_study(root, default, "with-pruning", args.trials)
        unpruned = run_study(root, {"type": "none"}, "without-pruning", args.trials)
    result = {
        "mode": f"demo study, {args.trials} trials",
        "pruner": default,
        "with": pruned,
        "without": unpruned,
        "epochs_ratio": pruned["epochs"] / unpruned["epochs"],
        "seconds_ratio": pruned["seconds"] / unpruned["seconds"],
        "best_value_difference_points": 100 * (pruned["best_value"] - unpruned["best_value"]),
        "target_epochs_ratio": 0.5,
        "target_points": 0.5,
    }
    print(
        f"epochs with/without pruning {result['epochs_ratio']:.2f}, seconds {result['seconds_ratio']:.2f}, "
        f"best {pruned['best_value']:.4f} vs {unpruned['best_value']:.4f}"
    )
    save("pruning_economy", result)


if __name__ == "__main__":
    main()
