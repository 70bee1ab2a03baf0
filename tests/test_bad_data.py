"""Bad images and odd datasets: skipped or refused in one line, odd formats converted."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from trainer.cli import main
from trainer.config import Config
from trainer.data.dataset import find_samples
from trainer.data.images import ImageReadError, read_rgb
from trainer.data.scan import SKIPPED_FILE
from trainer.errors import UserError
from trainer.fit import fit
from trainer.tracking import MlflowTracker

from .conftest import DEMO_CONFIG, small_config

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def good_jpeg_bytes() -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def add_bad_images(folder: Path) -> dict[str, str]:
    """Writes every kind of unusable file into ``folder``; returns name -> expected reason."""
    jpeg = good_jpeg_bytes()
    corrupt = bytearray(jpeg)
    corrupt[2:40] = b"\0" * 38
    (folder / "corrupt.jpg").write_bytes(bytes(corrupt))
    _, png = cv2.imencode(".png", np.full((40, 40, 3), 7, np.uint8))
    (folder / "truncated.png").write_bytes(png.tobytes()[: len(png) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("a text file with an image's name\n")
    (folder / "broken.jpg").symlink_to(folder / "no-such-target.jpg")
    expected = {
        "corrupt.jpg": "cannot decode",
        "truncated.png": "cannot decode",
        "empty.jpg": "empty file (0 bytes)",
        "notes.jpg": "cannot decode",
        "broken.jpg": "file not found (a broken link?)",
    }
    if not ROOT_USER:  # root reads any file whatever its mode
        locked = folder / "locked.jpg"
        locked.write_bytes(jpeg)
        locked.chmod(0)
        expected["locked.jpg"] = "permission denied"
    return expected


@pytest.fixture
def damaged_digits(digits_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "damaged"
    shutil.copytree(digits_dir, root)
    return root, add_bad_images(root / "1")


def test_each_kind_of_unreadable_file_has_its_reason(
    damaged_digits: tuple[Path, dict[str, str]],
) -> None:
    root, expected = damaged_digits
    for name, reason in expected.items():
        with pytest.raises(ImageReadError) as caught:
            read_rgb(root / "1" / name)
        assert caught.value.reason.startswith(reason), (name, caught.value.reason)
        assert str(caught.value) == f"cannot read image {root / '1' / name}: {caught.value.reason}"


def test_permission_denied_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path as a real chmod 000 file when the tests run as root.
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "fromfile", refuse)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_rgb(tmp_path / "x.jpg")


def test_bad_images_are_skipped_listed_and_counted(
    damaged_digits: tuple[Path, dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, expected = damaged_digits
    config = small_config(root, tmp_path / "out")
    tracker = MlflowTracker(config.tracking, config.experiment)
    with caplog.at_level(logging.WARNING):
        summary = fit(config, [tracker])
    assert f"skipping {len(expected)} unreadable image(s)" in caplog.text
    with (Path(summary["run_dir"]) / SKIPPED_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"]: row["reason"] for row in rows}.keys() == {f"1/{n}" for n in expected}
    for row in rows:
        assert row["reason"].startswith(expected[row["path"][2:]])
    assert tracker.run_id is not None
    client = MlflowClient()
    run = client.get_run(tracker.run_id)
    assert run.data.tags["data.skipped_images"] == str(len(expected))
    assert run.data.tags["data.n_images"] == "72"  # the 72 good ones trained
    logged = [a.path for a in client.list_artifacts(tracker.run_id, "data")]
    assert logged == [f"data/{SKIPPED_FILE}"]


def test_no_bad_images_count_zero(config: Config) -> None:
    tracker = MlflowTracker(config.tracking, config.experiment)
    fit(config, [tracker])
    assert tracker.run_id is not None
    run = MlflowClient().get_run(tracker.run_id)
    assert run.data.tags["data.skipped_images"] == "0"
    assert not MlflowClient().list_artifacts(tracker.run_id, "data")


def test_error_policy_stops_in_one_line(
    damaged_digits: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, expected = damaged_digits
    code = main(
        [
            "fit",
            str(DEMO_CONFIG),
            "--set",
            f"data.root={root}",
            "--set",
            f"output.dir={tmp_path / 'out'}",
            "--set",
            "data.on_bad_image=error",
            "--set",
            "tracking=false",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert f"{len(expected)} unreadable image(s) in {root}, first 1/" in line
    assert "set data.on_bad_image=skip" in line
    assert "Traceback" not in err


def test_odd_formats_are_converted_not_skipped(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels)
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.convert("P").save(tmp_path / "palette.png")
    rgb.convert("L").save(tmp_path / "gray.jpg")
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("LA").save(tmp_path / "gray-alpha.png")
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    for path in sorted(tmp_path.iterdir()):
        image = read_rgb(path)
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8, path
    palette = np.asarray(rgb.convert("P").convert("RGB"))
    assert np.array_equal(read_rgb(tmp_path / "palette.png"), palette)
    cmyk = read_rgb(tmp_path / "cmyk.jpg").astype(int)
    assert np.abs(cmyk - pixels.astype(int)).mean() < 12  # colours survive, not inverted


MEASURE = """
import sys
from pathlib import Path
from trainer.data.images import read_rgb

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # restart the peak (VmHWM) from the current resident size
before = kib("VmRSS:")
at_least = None if sys.argv[2] == "none" else int(sys.argv[2])
image = read_rgb(Path(sys.argv[1]), at_least=at_least)
print(image.shape[0], image.shape[1], (kib("VmHWM:") - before) // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak memory via Linux /proc"
)
def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    canvas = np.zeros((10_000, 10_000), np.uint8)
    canvas[::50] = 255
    assert cv2.imwrite(str(huge), canvas)
    del canvas

    def decode(at_least: str) -> tuple[int, int, int]:
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, str(huge), at_least],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        height, width, grown_mb = (int(value) for value in out)
        return height, width, grown_mb

    height, width, grown_mb = decode("64")
    assert (height, width) == (1250, 1250)  # 1/8 scale still covers 64 px
    assert grown_mb < 60, grown_mb
    full_height, _, full_grown_mb = decode("none")
    assert full_height == 10_000 and full_grown_mb > 250  # what the reduced decode avoids


def test_odd_file_names_train_and_track(digits_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "names"
    shutil.copytree(digits_dir, root)
    first = sorted((root / "0").iterdir())
    odd = [
        root / "0" / "with space (1).png",
        root / "0" / os.fsdecode(b"latin1-caf\xe9.png"),  # not valid UTF-8
        root / "0" / "ünïcödé.png",
    ]
    for source, target in zip(first, odd, strict=False):
        source.rename(target)
    config = small_config(root, tmp_path / "out")
    tracker = MlflowTracker(config.tracking, config.experiment)
    summary = fit(config, [tracker])
    assert summary["cv/val_acc_mean"] > 0
    split_file = next((tmp_path / "out" / "splits").glob("*-k2-*.csv"))
    text = split_file.read_bytes()
    assert b"with space (1).png" in text and b"latin1-caf\xe9.png" in text
    assert MlflowClient().get_run(str(tracker.run_id)).info.status == "FINISHED"


def test_same_file_under_two_classes_warns(
    digits_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "copies"
    shutil.copytree(digits_dir, root)
    shutil.copy(root / "0" / "0_0000.png", root / "2" / "copied.png")
    config = small_config(root, tmp_path / "out", tracking={"enabled": False})
    with caplog.at_level(logging.WARNING):
        fit(config)
    assert "1 image(s) appear with the same bytes under different classes" in caplog.text
    assert "0/0_0000.png and 2/copied.png" in caplog.text


def test_empty_class_folder_is_ignored_with_a_warning(
    digits_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "empty-class"
    shutil.copytree(digits_dir, root)
    (root / "9").mkdir()
    with caplog.at_level(logging.WARNING):
        samples = find_samples(root)
    assert samples.class_names == ("0", "1", "2")
    assert f"class folder {root / '9'} holds no images; it is ignored" in caplog.text


def test_class_emptied_by_skipping_is_named(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    for number in range(6):
        assert cv2.imwrite(str(tmp_path / "a" / f"{number}.png"), np.full((8, 8), number, np.uint8))
        (tmp_path / "b" / f"{number}.png").write_text("not an image")
    config = small_config(tmp_path, tmp_path / "out", tracking={"enabled": False})
    with pytest.raises(UserError, match="class 'b' has 0 image"):
        fit(config)
