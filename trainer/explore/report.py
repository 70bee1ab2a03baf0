"""The command line's view of an exploration: which config, and a two-column summary table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainer.config import Config, apply_overrides, config_from_dict, load_config
from trainer.errors import UserError
from trainer.explore.findings import warning_line
from trainer.explore.run import Exploration

CONFIG_SUFFIXES = (".yaml", ".yml")
SHOWN_CLASSES = 12


def config_for(target: Path, overrides: list[str]) -> Config:
    """A YAML config, or the default config around a data folder (or ``path,label`` CSV)."""
    if not target.exists():
        raise UserError(
            f"not found: {target} (give a config .yaml, a folder of class folders or a "
            "path,label CSV)"
        )
    if target.suffix.lower() in CONFIG_SUFFIXES:
        return load_config(target, overrides)
    raw = apply_overrides({"data": {"root": str(target)}}, overrides)
    return config_from_dict(raw, source=str(target))


def summary_rows(found: Exploration, experiment: str) -> list[tuple[str, str]]:
    """(what, value) rows for the terminal."""
    summary, images = found.summary, found.images
    rows = [
        ("data", f"{found.root} ({len(images)} images, {len(found.classes)} classes)"),
        ("digest", found.digest[:16]),
        ("images per class", _classes(found.classes)),
        ("imbalance", f"largest / smallest class = {summary['imbalance_ratio']:.2f}"),
        ("holdout / folds", _splits(found)),
        ("size (w x h)", _sizes(summary)),
    ]
    for name in ("format", "mode", "channels", "bit_depth"):
        rows.append((name.replace("_", " "), _counts(images[name])))
    rows.append(("EXIF-rotated", f"{int(summary['exif_rotated'])} (shown upright)"))
    rows.append(("unreadable", _unreadable(images)))
    for kind in ("exact", "near"):
        scopes = [
            f"{int(summary[f'{kind}_duplicates/{scope}'])} {scope.replace('_', '-')}"
            for scope in ("within_class", "cross_class", "leakage")
        ]
        rows.append((f"{kind} duplicate pairs", ", ".join(scopes)))
    rows.append(("pictures", f"{found.out_dir}/ (thumbnails/, duplicates/, *.png)"))
    where = f"run {found.run_id} in experiment {experiment!r}" if found.run_id else "tracking off"
    rows.append(("MLflow", where))
    return rows


def format_table(rows: list[tuple[str, str]]) -> str:
    """Rows as two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def warning(found: Exploration, target: Path) -> str | None:
    """The line training will print about these findings (None when there is nothing)."""
    return warning_line(found.pairs, str(target))


def _classes(classes: pd.DataFrame) -> str:
    pairs = [
        f"{name}: {count}" for name, count in zip(classes["class"], classes["images"], strict=True)
    ]
    if len(pairs) > SHOWN_CLASSES:
        return ", ".join(pairs[:SHOWN_CLASSES]) + f", … ({len(pairs)} classes, see classes.csv)"
    return ", ".join(pairs)


def _splits(found: Exploration) -> str:
    if found.split_file is None:
        return f"none: {found.split_note}"
    columns = [c for c in found.classes.columns if c.startswith(("fold_", "train_only"))]
    parts = [f"holdout {int(found.summary['holdout'])}"]
    parts += [f"{c.replace('_', ' ')} {int(found.classes[c].sum())}" for c in columns]
    return f"{', '.join(parts)} ({Path(found.split_file).name})"


def _sizes(summary: dict[str, float]) -> str:
    if "width_min" not in summary:
        return "unknown"
    return (
        f"{summary['width_min']:g}-{summary['width_max']:g} x "
        f"{summary['height_min']:g}-{summary['height_max']:g} px, aspect "
        f"{summary['aspect_min']:.2f}-{summary['aspect_max']:.2f}"
    )


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{value} ({count})" for value, count in values.value_counts().items())


def _unreadable(images: pd.DataFrame) -> str:
    bad = images[images["error"] != ""]
    if not len(bad):
        return "0"
    first = bad.iloc[0]
    return f"{len(bad)}, e.g. {first['path']}: {first['error']} (unreadable.csv)"
