"""The decoded-image cache on disk: shared by processes, keyed, bounded, clearable, self-healing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.cli import main
from trainer.data import cache_files
from trainer.data.cache import CacheRegistry, ImageCache
from trainer.data.cache_admin import list_entries
from trainer.data.cache_files import cache_dir
from trainer.data.dataset import find_samples
from trainer.data.images import read_rgb
from trainer.data.scan import fingerprint
from trainer.data.transforms import Resize
from trainer.fit import fit

from .conftest import REPO, small_config

# Run in a separate interpreter: open the dataset's cache, read every image (in the given
# order), count the decodes, and save the pixels in index order.
READER = """
import json, sys
from pathlib import Path
import numpy as np
from trainer.data import images
from trainer.data.cache import CACHES
from trainer.data.dataset import find_samples
from trainer.data.scan import fingerprint
from trainer.data.transforms import Resize

root, size, out, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
decodes = 0
real_read_rgb = images.read_rgb

def counting_read_rgb(*args, **kwargs):
    global decodes
    decodes += 1
    return real_read_rgb(*args, **kwargs)

images.read_rgb = counting_read_rgb
samples = find_samples(Path(root))
cache = CACHES.get(fingerprint(samples), samples.paths, Resize(size), 64)
indices = list(range(len(samples.paths)))
pixels = {i: cache.get(i) for i in (indices if order == "forward" else indices[::-1])}
np.save(out, np.stack([pixels[i] for i in indices]))
print(json.dumps({"decodes": decodes, "file": str(cache.entry.path)}))
"""


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder for this test alone (also for the processes it starts)."""
    folder = tmp_path / "image-cache"
    monkeypatch.setenv("TIMM_STUDIES_CACHE", str(folder))
    return folder


def start_reader(root: Path, size: int, out: Path, order: str) -> subprocess.Popen[str]:
    """A separate process reading the whole dataset through the shared cache."""
    command = [sys.executable, "-c", READER, str(root), str(size), str(out), order]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    """The reader's report once it exits successfully."""
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    report: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return report


def fresh(paths: tuple[Path, ...], size: int) -> np.ndarray:
    """Every image decoded and resized now, without any cache."""
    return np.stack([Resize(size)(read_rgb(path, at_least=size)) for path in paths])


def open_dataset(root: Path, size: int, budget_mb: int = 64) -> ImageCache:
    """The dataset's cache at ``size`` as a new process would open it."""
    samples = find_samples(root)
    return CacheRegistry().get(fingerprint(samples), samples.paths, Resize(size), budget_mb)


def fill(cache: ImageCache) -> None:
    """Decode every image into the cache."""
    for index in range(len(cache.paths)):
        cache.get(index)


def test_processes_share_one_file_and_a_later_one_never_decodes(
    digits_dir: Path, tmp_path: Path
) -> None:
    size = 12
    expected = fresh(find_samples(digits_dir).paths, size)
    writers = [
        start_reader(digits_dir, size, tmp_path / f"{order}.npy", order)
        for order in ("forward", "backward")
    ]
    reports = [finish(process) for process in writers]
    assert reports[0]["file"] == reports[1]["file"]
    assert Path(str(reports[0]["file"])).parent == cache_dir()
    for order in ("forward", "backward"):
        assert np.array_equal(np.load(tmp_path / f"{order}.npy"), expected)

    later = finish(start_reader(digits_dir, size, tmp_path / "later.npy", "forward"))
    assert later["decodes"] == 0
    assert np.array_equal(np.load(tmp_path / "later.npy"), expected)


def test_a_changed_file_is_never_served_from_the_old_entry(
    digits_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(digits_dir, root)
    fill(open_dataset(root, 12))
    changed = find_samples(root).paths[0]
    cv2.imwrite(str(changed), 255 - cv2.imread(str(changed)))

    cache = open_dataset(root, 12)
    assert cache.filled() == 0  # a new digest: a new entry
    assert np.array_equal(cache.get(0), Resize(12)(read_rgb(changed, at_least=12)))


def test_a_new_decoder_version_does_not_read_old_entries(
    digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(open_dataset(digits_dir, 13))
    monkeypatch.setattr(cache_files, "FORMAT_VERSION", cache_files.FORMAT_VERSION + 1)
    assert open_dataset(digits_dir, 13).filled() == 0


def test_the_budget_removes_the_least_recently_used_entry(digits_dir: Path) -> None:
    # 72 images at 64-66 px are ~0.9 MB an entry: two fit in 2 MB, three do not.
    first = open_dataset(digits_dir, 64, budget_mb=2).entry
    second = open_dataset(digits_dir, 65, budget_mb=2).entry
    assert first is not None and second is not None
    open_dataset(digits_dir, 64, budget_mb=2)  # used again: now the second is the oldest
    third = open_dataset(digits_dir, 66, budget_mb=2).entry
    assert third is not None
    assert first.path.exists() and third.path.exists()
    assert not second.path.exists()
    assert sum(info.nbytes for info in list_entries(cache_dir())) <= 2 * 2**20


def test_cache_command_lists_and_clears(
    digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small, large = open_dataset(digits_dir, 10), open_dataset(digits_dir, 11)
    assert small.entry is not None and large.entry is not None
    fill(small)
    assert main(["cache", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{small.entry.path.name}" in listing and "72/72 images" in listing

    assert main(["cache", "clear", small.entry.path.name]) == 0
    assert not small.entry.path.exists() and large.entry.path.exists()
    assert not small.is_current()
    assert main(["cache", "clear"]) == 0
    assert not list(cache_dir().glob("*.cache"))


def test_a_truncated_or_corrupt_file_is_ignored_and_rebuilt(digits_dir: Path) -> None:
    cache = open_dataset(digits_dir, 14)
    fill(cache)
    assert cache.entry is not None
    path, nbytes = cache.entry.path, cache.nbytes
    expected = fresh(find_samples(digits_dir).paths, 14)
    damages = [
        lambda: os.truncate(path, nbytes // 2),
        lambda: path.write_bytes(b"not a cache file"),
        lambda: path.write_bytes(path.read_bytes().replace(b'"capacity"', b'"kapacity"')),
    ]
    for damage in damages:
        damage()
        rebuilt = open_dataset(digits_dir, 14)
        assert rebuilt.filled() == 0 and path.stat().st_size == nbytes
        assert np.array_equal(np.stack([rebuilt.get(i) for i in range(72)]), expected)
        assert open_dataset(digits_dir, 14).filled() == 72


def test_a_dataset_larger_than_the_budget_still_trains(digits_dir: Path, tmp_path: Path) -> None:
    # 72 images at 128 px are 3.5 MB of pixels, in a budget of 1 MB.
    config = small_config(
        digits_dir, tmp_path / "out", data={"cache_mb": 1}, train={"image_size": 128}
    )
    summary = fit(config, [])
    assert summary["cv/val_acc_mean"] >= 0
    (entry,) = [info for info in list_entries(cache_dir()) if info.size == 128]
    assert entry.nbytes <= 2**20 and 0 < entry.filled <= entry.capacity < 72
