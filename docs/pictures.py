"""Regenerate the README's pictures (docs/images/*.png) from real runs on the bundled digits.

In a scratch folder with its own embedded MLflow store (``MLFLOW_TRACKING_URI`` set to a SQLite
file there), this runs what ``make demo`` runs, smaller: the digits are written, ``trainer
explore`` looks at them, a 4-trial study of ``studies/configs/demo.yaml`` runs, its best trial
is promoted (a refit nested under the trial run) and ``studies report`` builds the report.
Then it writes

    explore-grid.png   one class's thumbnail grid, copied from the explore output
    run-tree.png       the run hierarchy as the store has it (parents: ``mlflow.parentRunId``)
    report.png         the report's first screen: its summary facts and optimisation history,
                       from the report's own functions (the HTML cannot be screenshotted here)

Nothing is drawn by hand: every name, status and number comes from the runs just made.
Run it as ``.venv/bin/python docs/pictures.py`` or ``make pictures`` (a few minutes on 2 CPU
cores); ``--work DIR`` keeps the scratch folder, ``--draw-only`` redraws from a kept one.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
DEMO_CONFIG = ROOT / "trainer" / "configs" / "demo.yaml"
DEMO_STUDY = ROOT / "studies" / "configs" / "demo.yaml"
TRIALS = 4  # enough for a pruned trial or two and a best-so-far line, quick enough to rerun
GRID_CLASS = "3"  # the digit whose thumbnail grid is shown
DPI = 90
# The metric shown per run: the first of these it has (study, trial, fold, refit; pruned runs).
KEY_METRICS = ("best_value", "objective", "best/val_acc", "test/acc", "val/acc", "epochs_trained")
STATUS_COLOURS = {"FINISHED": "#1a7f37", "KILLED": "#b35900", "FAILED": "#cf222e"}

log = logging.getLogger("pictures")


def study_name() -> str:
    """The demo study's name (its MLflow experiment)."""
    return str(yaml.safe_load(DEMO_STUDY.read_text())["name"])


def run_workflow(work: Path) -> None:
    """Digits, explore, a small study, promotion of its best trial and the report, in ``work``."""
    from studies.cli import main as studies
    from trainer.cli import main as trainer

    digits, out = work / "digits", work / "outputs"
    data = [f"data.root={digits}", f"output.dir={out}"]
    steps: list[tuple[str, Any, list[str]]] = [
        ("sample data", trainer, ["sample-data", str(digits)]),
        ("explore", trainer, ["explore", str(DEMO_CONFIG), *_sets(data)]),
        ("study", studies, ["run", str(_study_file(work, data)), "--n-trials", str(TRIALS)]),
        ("promote", studies, ["promote", study_name(), "--model-name", "digits"]),
        ("report", studies, ["report", study_name(), "--out", str(work / "report.html")]),
    ]
    for label, command, argv in steps:
        start = time.perf_counter()
        code = command(argv)
        if code != 0:
            raise SystemExit(f"{label} failed (exit {code}): {argv}")
        log.info("%s: %.0f s", label, time.perf_counter() - start)


def _sets(overrides: list[str]) -> list[str]:
    """``--set KEY=VALUE`` arguments for ``trainer``."""
    return [arg for item in overrides for arg in ("--set", item)]


def _study_file(work: Path, overrides: list[str]) -> Path:
    """The demo study file with its data, outputs and journal storage in ``work``."""
    raw = yaml.safe_load(DEMO_STUDY.read_text())
    raw["base"]["file"] = str(DEMO_STUDY.parent / raw["base"]["file"])
    raw["base"]["set"] = [*raw["base"]["set"], *overrides, "runtime.progress=false"]
    raw["storage"] = str(work / "journal.log")
    path = work / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def copy_grid(work: Path) -> Path:
    """The explore run's thumbnail grid of class ``GRID_CLASS``, copied into docs/images/."""
    folder = work / "outputs" / str(yaml.safe_load(DEMO_CONFIG.read_text())["experiment"])
    grids = sorted((folder / "explore" / "thumbnails").glob(f"*-{GRID_CLASS}.png"))
    if not grids:
        raise SystemExit(f"no thumbnail grid of class {GRID_CLASS} under {folder}")
    target = IMAGES / "explore-grid.png"
    shutil.copyfile(grids[0], target)
    return target


@dataclass(frozen=True)
class Line:
    """One run of the tree: its drawn prefix and name, status and key metric."""

    tree: str
    status: str
    metric: str


def run_tree(name: str) -> list[Line]:
    """The study's runs as the store nests them: study run, trial runs, their children."""
    from mlflow import MlflowClient

    from trainer.tracking import PARENT_RUN_TAG, tracking_uri

    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise SystemExit(f"no experiment {name} in {tracking_uri()}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    children: dict[str | None, list[Any]] = {}
    for run in runs:
        children.setdefault(run.data.tags.get(PARENT_RUN_TAG), []).append(run)
    lines: list[Line] = []
    for root in sorted(children.get(None, []), key=_order):
        _walk(root, children, "", "", lines)
    return lines


def _order(run: Any) -> tuple[int, str]:
    """Trials by number, then the rest by name (fold-0, fold-1, …, refit)."""
    trial = run.data.tags.get("optuna.trial")
    return (int(trial), "") if trial is not None else (1 << 30, str(run.info.run_name))


def _walk(
    run: Any, children: dict[str | None, list[Any]], lead: str, rest: str, lines: list[Line]
) -> None:
    """Append ``run`` and, indented under it, its children."""
    lines.append(Line(lead + str(run.info.run_name), _status(run), _key_metric(run)))
    kids = sorted(children.get(run.info.run_id, []), key=_order)
    for index, kid in enumerate(kids):
        last = index == len(kids) - 1
        _walk(
            kid,
            children,
            rest + ("└─ " if last else "├─ "),
            rest + ("   " if last else "│  "),
            lines,
        )


def _status(run: Any) -> str:
    """The run's status, with the Optuna state where it says more (KILLED = pruned)."""
    state = run.data.tags.get("optuna.state")
    status = str(run.info.status)
    return f"{status} ({state.lower()})" if state and state != "COMPLETE" else status


def _key_metric(run: Any) -> str:
    """The first of the metrics that say how a run did, as ``name value`` (a pruned fold's
    latest val/acc, a pruned trial's epochs trained)."""
    metrics = run.data.metrics
    for key in KEY_METRICS:
        if key in metrics:
            value = metrics[key]
            shown = f"{value:.0f}" if key == "epochs_trained" else f"{value:.4f}"
            return f"{key} {shown}" + (" (latest)" if key == "val/acc" else "")
    return ""


def draw_tree(lines: list[Line], name: str, target: Path) -> Path:
    """The tree as monospace text in three columns, each status in its colour."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans Mono"), 13)
    bold = ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), 14)
    char, step, pad = font.getlength("M"), 18, 14
    widths = [max(len(getattr(line, col)) for line in lines) + 3 for col in ("tree", "status")]
    columns = [pad, pad + widths[0] * char, pad + (widths[0] + widths[1]) * char]
    title = f"Run hierarchy of study {name}, as the MLflow UI nests it"
    note = "parent links: the mlflow.parentRunId tag; status (Optuna state); key metric"
    ends = [columns[2] + max(len(line.metric) for line in lines) * char, bold.getlength(title)]
    width = int(max(*ends, pad + len(note) * char) + pad)
    image = Image.new("RGB", (width, pad * 2 + step * (len(lines) + 3)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill="black", font=bold)
    draw.text((pad, pad + step), note, fill="#57606a", font=font)
    for row, line in enumerate(lines, start=3):
        y = pad + row * step
        colour = STATUS_COLOURS.get(line.status.split()[0], "black")
        draw.text((columns[0], y), line.tree, fill="black", font=font)
        draw.text((columns[1], y), line.status, fill=colour, font=font)
        draw.text((columns[2], y), line.metric, fill="#24292f", font=font)
    image.save(target, optimize=True)
    return target


def draw_report(name: str, target: Path) -> Path:
    """The report's first screen: the summary facts and the optimisation history, taken from
    the report's own functions (``_facts``, ``history_figure``) on the study as stored."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from mlflow import MlflowClient

    from studies.report.data import load_study
    from studies.report.figures import history_figure
    from studies.report.summary import _facts
    from trainer.tracking import tracking_uri

    study = load_study(MlflowClient(tracking_uri()), name)
    facts = _facts(study, study.trials)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(8.4, 6.6), dpi=DPI, gridspec_kw={"height_ratios": [1, 1.25]}
    )
    figure.suptitle(f"Study report, first screen: Summary of {name}", fontweight="bold")
    _facts_table(top, facts)
    _history(bottom, history_figure(study.trials))
    figure.tight_layout()
    figure.savefig(target, dpi=DPI)
    plt.close(figure)
    return target


def _facts_table(axes: Any, facts: dict[str, str]) -> None:
    """The summary's rows as a two-column table (long values wrapped)."""
    axes.axis("off")
    cells = [[key, textwrap.fill(value, 70)] for key, value in facts.items()]
    table = axes.table(cellText=cells, colWidths=[0.26, 0.74], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(9.5)
    for (row, col), cell in table.get_celld().items():
        lines = max(text.count("\n") + 1 for text in cells[row])
        cell.set_height(0.12 * lines)
        cell.set_edgecolor("#d0d7de")
        if col == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#f6f8fa")


def _history(axes: Any, plotly_figure: Any) -> None:
    """The plotly figure's traces (markers: value per trial; lines: best so far), redrawn."""
    for trace in plotly_figure.data:
        x, y = list(trace.x), list(trace.y)
        if trace.mode == "markers":
            axes.plot(x, y, "o", label=trace.name)
        else:  # plotly's line shape: linear unless the trace says "hv" (steps)
            steps = "steps-post" if trace.line.shape == "hv" else "default"
            axes.plot(x, y, "-", drawstyle=steps, label=trace.name)
    layout = plotly_figure.layout
    axes.set_title(layout.title.text, fontsize=11)
    axes.set_xlabel(layout.xaxis.title.text)
    axes.set_ylabel(layout.yaxis.title.text)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")


def main() -> None:
    """Run the workflow in a scratch store (or reuse one) and write the three pictures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder to use and keep")
    parser.add_argument("--draw-only", action="store_true", help="redraw from a kept --work")
    args = parser.parse_args()
    if args.draw_only and not args.work:
        parser.error("--draw-only needs --work DIR (a folder kept by an earlier --work run)")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.work or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        if not args.draw_only:
            run_workflow(work)
        IMAGES.mkdir(parents=True, exist_ok=True)
        written = [
            copy_grid(work),
            draw_tree(run_tree(study_name()), study_name(), IMAGES / "run-tree.png"),
            draw_report(study_name(), IMAGES / "report.png"),
        ]
    for path in written:
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")
    print(f"pictures written in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
