"""Dataset discovery, the fixed holdout and folds, and image decoding."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.data.cache import ImageCache
from trainer.data.dataset import find_samples
from trainer.data.images import read_rgb
from trainer.data.splits import TEST_CODE, load_or_create_splits
from trainer.data.transforms import Resize
from trainer.errors import UserError


def png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def test_class_folders_sorted_nested_and_non_images_ignored(tmp_path: Path) -> None:
    gray = np.zeros((4, 4), np.uint8)
    png(tmp_path / "zebra" / "a.png", gray)
    png(tmp_path / "apple" / "deep" / "nested" / "b.PNG", gray)
    png(tmp_path / "apple" / "c.png", gray)
    png(tmp_path / "apple" / "album.jpg" / "d.png", gray)  # a folder named like an image
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("ignored")
    samples = find_samples(tmp_path)
    assert samples.class_names == ("apple", "zebra")
    assert [samples.relative(i) for i in range(len(samples))] == [
        "apple/album.jpg/d.png",
        "apple/c.png",
        "apple/deep/nested/b.PNG",
        "zebra/a.png",
    ]
    assert samples.labels.tolist() == [0, 0, 0, 1]


def test_csv_paths_relative_to_csv(tmp_path: Path) -> None:
    gray = np.zeros((4, 4), np.uint8)
    png(tmp_path / "img" / "1.png", gray)
    png(tmp_path / "img" / "2.png", gray)
    (tmp_path / "labels.csv").write_text("path,label\nimg/1.png,cat\nimg/2.png,dog\n")
    samples = find_samples(tmp_path / "labels.csv")
    assert samples.class_names == ("cat", "dog")
    assert samples.paths[0] == (tmp_path / "img" / "1.png").resolve()
    assert samples.relative_paths == ("img/1.png", "img/2.png")


def test_relative_paths_match_path_relative_to_with_any_root_spelling(tmp_path: Path) -> None:
    from trainer.data.dataset import Samples

    paths = (tmp_path / "a" / "x.png", tmp_path / "b" / "deep" / "y y.png")
    for root in (tmp_path, Path(f"{tmp_path}/"), Path("/")):
        samples = Samples(root, paths, np.array([0, 1]), ("a", "b"))
        expected = tuple(p.relative_to(root).as_posix() for p in paths)
        assert samples.relative_paths == expected
        assert [samples.relative(i) for i in range(2)] == list(expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,label\n", "missing column"),
        ("path,label\nimg/1.png,\n", "empty label"),
        ("path,label\n../outside.png,a\n", "points outside"),
        ("path,label\nnope.png,a\n", "not found"),
        (
            "path,label\nimg/1.png,caf\xe9\n".encode("latin-1"),
            r"not UTF-8 text \(byte 0xe9 at offset 24\)",
        ),
    ],
)
def test_bad_csv_gives_clear_error(tmp_path: Path, content: str | bytes, message: str) -> None:
    png(tmp_path / "img" / "1.png", np.zeros((4, 4), np.uint8))
    csv_file = tmp_path / "labels.csv"
    csv_file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message):
        find_samples(csv_file)


def test_missing_and_single_class_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset not found"):
        find_samples(tmp_path / "missing")
    png(tmp_path / "only" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="only the class 'only'"):
        find_samples(tmp_path)


def test_folds_stratified_disjoint_and_holdout_excluded(digits_dir: Path, tmp_path: Path) -> None:
    samples = find_samples(digits_dir)
    splits = load_or_create_splits(samples, tmp_path / "s.csv", 0.1, 4, 0.2, seed=3)
    test = set(splits.test.tolist())
    assert len(test) == pytest.approx(0.1 * len(samples), abs=3)
    assert np.bincount(samples.labels[splits.test]).min() >= 2  # every class held out
    seen_val: set[int] = set()
    for k in range(splits.n_folds):
        train, val = splits.fold(k)
        assert not set(train) & set(val)
        assert not (set(train) | set(val)) & test
        assert not set(val) & seen_val
        seen_val |= set(val.tolist())
        counts = np.bincount(samples.labels[val], minlength=3)
        assert counts.max() - counts.min() <= 1  # stratified
    assert seen_val == set(splits.trainval.tolist())


def test_single_fold_is_a_stratified_train_val_split(digits_dir: Path, tmp_path: Path) -> None:
    samples = find_samples(digits_dir)
    splits = load_or_create_splits(samples, tmp_path / "s.csv", 0.1, 1, 0.25, seed=0)
    train, val = splits.fold(0)
    assert splits.n_folds == 1
    assert not set(train) & set(val) and not set(val) & set(splits.test.tolist())
    assert len(train) + len(val) == len(splits.trainval)
    assert np.bincount(samples.labels[val]).min() >= 4


def test_split_file_is_reused(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = find_samples(digits_dir)
    first = load_or_create_splits(samples, tmp_path / "s.csv", 0.1, 3, 0.2, seed=1)
    import trainer.data.splits

    def no_redraw(*_: object) -> None:
        raise AssertionError("splits were drawn again instead of read from the file")

    monkeypatch.setattr(trainer.data.splits, "_draw", no_redraw)
    second = load_or_create_splits(samples, tmp_path / "s.csv", 0.1, 3, 0.2, seed=1)
    assert np.array_equal(first.fold_of, second.fold_of)
    assert (first.fold_of == TEST_CODE).sum() == len(first.test)


def test_split_file_of_other_data_is_refused(digits_dir: Path, tmp_path: Path) -> None:
    samples = find_samples(digits_dir)
    path = tmp_path / "s.csv"
    load_or_create_splits(samples, path, 0.1, 3, 0.2, seed=1)
    path.write_text(path.read_text().replace("0/0_0000.png", "0/renamed.png"))
    with pytest.raises(UserError, match="does not match the images"):
        load_or_create_splits(samples, path, 0.1, 3, 0.2, seed=1)


def test_class_smaller_than_folds_is_named(tmp_path: Path) -> None:
    for i in range(10):
        png(tmp_path / "big" / f"{i}.png", np.zeros((4, 4), np.uint8))
    for i in range(3):
        png(tmp_path / "tiny" / f"{i}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="class 'tiny' has 3 image"):
        load_or_create_splits(find_samples(tmp_path), tmp_path / "s.csv", 0.1, 5, 0.2, seed=0)


def test_grayscale_rgba_and_16_bit_load_as_rgb(tmp_path: Path) -> None:
    gray = png(tmp_path / "g.png", np.full((5, 6), 200, np.uint8))
    bgra = np.zeros((5, 6, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 250, 128  # blue 10, red 250
    rgba = png(tmp_path / "a.png", bgra)
    deep = png(tmp_path / "d.png", np.full((5, 6, 3), 65535, np.uint16))
    for path in (gray, rgba, deep):
        image = read_rgb(path)
        assert image.shape == (5, 6, 3) and image.dtype == np.uint8
    assert read_rgb(gray)[0, 0].tolist() == [200, 200, 200]
    assert read_rgb(rgba)[0, 0].tolist() == [250, 0, 10]  # channels reordered to RGB
    assert read_rgb(deep)[0, 0].tolist() == [255, 255, 255]


def test_undecodable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is text")
    with pytest.raises(UserError, match="cannot decode"):
        read_rgb(bad)


def test_cache_returns_fresh_decode_pixels_and_is_shared_with_forks(digits_dir: Path) -> None:
    samples = find_samples(digits_dir)
    resize = Resize(12)
    cache = ImageCache(samples.paths[:6], resize, capacity=4)
    pid = os.fork()
    if pid == 0:  # child: fill the cache, like a DataLoader worker would
        for i in range(6):
            cache.get(i)
        os._exit(0)
    os.waitpid(pid, 0)
    assert cache.filled() == 4  # the parent sees what the child decoded
    for i in range(6):
        fresh = resize(read_rgb(samples.paths[i]))
        assert np.array_equal(cache.get(i), fresh)


def test_holdout_smaller_than_the_classes_is_a_clear_error(tmp_path: Path) -> None:
    for label in range(10):
        for i in range(5):
            png(tmp_path / str(label) / f"{i}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="cannot split 50 images of 10 classes"):
        load_or_create_splits(find_samples(tmp_path), tmp_path / "s.csv", 0.1, 2, 0.2, seed=0)
