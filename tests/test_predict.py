"""``trainer predict`` on folders as users have them: some files cannot be read."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.cli import main

from .models import make_checkpoint


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three good images and three unreadable ones (truncated, empty, not an image)."""
    root = tmp_path / "new"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / name)
    whole = (root / "b.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("not a picture")
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_unreadable_images_are_skipped_listed_and_warned_once(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = make_checkpoint(tmp_path / "model", 16)
    out = tmp_path / "out" / "predictions.csv"
    assert main(["predict", "--model", str(checkpoint), str(folder), "--out", str(out)]) == 0
    assert [Path(r["path"]).name for r in rows(out)] == ["a.png", "b.jpg", "c.png"]
    skipped = {
        Path(r["path"]).name: r["reason"] for r in rows(out.with_name("predictions.skipped.csv"))
    }
    assert skipped == {
        "empty.png": "empty file (0 bytes)",
        "notes.jpg": "cannot decode (corrupt, truncated or not an image)",
        "truncated.jpg": "cannot decode (corrupt, truncated or not an image)",
    }
    warnings = [line for line in capsys.readouterr().err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "skipped 3 unreadable image(s)" in warnings[0]


def test_error_policy_stops_in_one_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = make_checkpoint(tmp_path / "model", 16)
    out = tmp_path / "predictions.csv"
    args = ["predict", "--model", str(checkpoint), str(folder), "--out", str(out)]
    assert main([*args, "--on-bad-image", "error"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: cannot read image ") and "\n" not in error
    assert "--on-bad-image skip" in error
    assert not out.exists()


def test_nothing_readable_is_an_error(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = make_checkpoint(tmp_path / "model", 16)
    bad = [str(folder / name) for name in ("truncated.jpg", "empty.png", "notes.jpg")]
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(checkpoint), *bad, "--out", str(out)]) == 2
    assert "none of the 3 image(s) could be read" in capsys.readouterr().err
    assert not out.exists() and len(rows(tmp_path / "predictions.skipped.csv")) == 3


def test_a_clean_run_removes_an_old_skipped_list(folder: Path, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "model", 16)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(checkpoint), str(folder), "--out", str(out)]) == 0
    assert out.with_name("predictions.skipped.csv").exists()
    good = str(folder / "a.png")
    assert main(["predict", "--model", str(checkpoint), good, "--out", str(out)]) == 0
    assert not out.with_name("predictions.skipped.csv").exists()


def test_folders_are_searched_for_image_files_only(tmp_path: Path) -> None:
    from trainer.predict import collect_images

    rng = np.random.default_rng(0)
    for name in ("z.png", "deep/a.JPG", "album.jpg/b.png"):  # a folder named like an image
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            tmp_path / "in" / name
        )
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    found = collect_images([tmp_path / "in"])
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found] == [
        "album.jpg/b.png",
        "deep/a.JPG",
        "z.png",
    ]
