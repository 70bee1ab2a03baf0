"""The fit's figures open offline: no HTML file loads a script or anything else from outside."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from trainer import plots

EXTERNAL = re.compile(r"<script[^>]*\bsrc=|<link[^>]*\bhref=['\"]?https?:|https?://cdn", re.I)


def test_learning_curves_are_a_png(tmp_path: Path) -> None:
    history = {
        "fold0": [{"train/loss": 1.0, "val/loss": 1.2, "train/acc": 0.5, "val/acc": 0.4}] * 3,
        "fold1": [{"train/loss": 0.9, "val/loss": 1.1, "train/acc": 0.6, "val/acc": 0.5}] * 3,
    }
    (png,) = plots.learning_curves(history, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_is_a_table_of_the_counts(tmp_path: Path) -> None:
    matrix = np.array([[7, 1], [2, 5]])
    (page,) = plots.confusion_matrix_plot(
        matrix, ["cat", "<dog>"], "fold0: validation", tmp_path / "cm"
    )
    text = page.read_text()
    assert not EXTERNAL.search(text) and "<script" not in text
    cells = [int(v) for v in re.findall(r"<td[^>]*>(\d+)</td>", text)]
    assert cells == [7, 1, 2, 5]  # row by row: true class, then predicted
    assert "&lt;dog&gt;" in text  # class names are escaped


def test_checker_sees_a_cdn_script() -> None:
    assert EXTERNAL.search('<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>')
