"""Exact and near duplicates, and what makes them matter: a label conflict or holdout leakage.

Exact duplicates share the SHA-256 of their bytes; each copy is paired with the first file of
its group, which is enough to show any conflict in the group (a copy whose label or split
differs from the first one's forms a flagged pair). Near duplicates are images whose 64-bit
perceptual hashes differ in at most ``near_distance`` bits (all pairs, compared in blocks with
numpy's popcount: about 2 s for 25,000 images), and are not exact copies of each other; images
under ``MIN_NEAR_SIDE`` pixels a side are left out of that search.

Each pair is ``cross_class`` when the two labels differ (one of them is wrong) and ``leakage``
when one image is in the holdout and the other is not (the holdout score then reads high).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NEAR_DISTANCE = 4  # bits of 64: resized, re-encoded or lightly edited copies stay within it
# The perceptual hash works on a 32x32 reduction: a smaller image (the 8x8 digits) holds too
# little detail for it, and different images of one kind hash alike. Only exact copies count.
MIN_NEAR_SIDE = 32
MAX_PAIRS = 20_000  # per kind; a folder of near-identical images would list millions
BLOCK = 512  # rows of the distance matrix compared at once
PAIR_COLUMNS = ["kind", "distance", "a", "b"]
TEST = "test"


def find_pairs(images: pd.DataFrame, near_distance: int = NEAR_DISTANCE) -> pd.DataFrame:
    """Duplicate pairs of the usable images (``error == ""``): ``kind`` (exact or near),
    ``distance`` (bits), and the row positions ``a`` < ``b`` of the two images."""
    usable = images["error"].to_numpy() == ""
    rows = np.flatnonzero(usable)
    large = np.flatnonzero(
        usable & (np.minimum(images["width"], images["height"]).to_numpy() >= MIN_NEAR_SIDE)
    )
    digests = images["sha256"].to_numpy()
    hashes = np.array([int(value, 16) for value in images["phash"].to_numpy()[large]], np.uint64)
    return pd.concat(
        [_exact(digests[rows], rows), _near(hashes, digests[large], large, near_distance)],
        ignore_index=True,
    )


def _exact(digests: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    groups: dict[str, list[int]] = {}
    for digest, row in zip(digests, rows, strict=True):
        groups.setdefault(str(digest), []).append(int(row))
    pairs = [(group[0], other) for group in groups.values() for other in group[1:]]
    return _frame("exact", pairs[:MAX_PAIRS], [0] * min(len(pairs), MAX_PAIRS), len(pairs))


def _near(
    hashes: np.ndarray, digests: np.ndarray, rows: np.ndarray, near_distance: int
) -> pd.DataFrame:
    found: list[tuple[np.ndarray, np.ndarray]] = []
    total = kept = 0
    for start in range(0, len(hashes), BLOCK):
        distance = np.bitwise_count(hashes[start : start + BLOCK, None] ^ hashes[None, start:])
        i, j = np.nonzero(distance <= near_distance)
        i, j = i + start, j + start
        keep = (j > i) & (digests[i] != digests[j])  # each pair once; exact copies are listed
        i, j = i[keep], j[keep]
        total += len(i)
        if kept < MAX_PAIRS:
            found.append((i[: MAX_PAIRS - kept], j[: MAX_PAIRS - kept]))
            kept += len(found[-1][0])
    a = np.concatenate([i for i, _ in found]) if found else np.zeros(0, np.int64)
    b = np.concatenate([j for _, j in found]) if found else np.zeros(0, np.int64)
    distances = np.bitwise_count(hashes[a] ^ hashes[b]).astype(np.int64).tolist()
    pairs = list(zip(rows[a].tolist(), rows[b].tolist(), strict=True))
    return _frame("near", pairs, distances, total)


def _frame(
    kind: str, pairs: list[tuple[int, int]], distances: list[int], total: int
) -> pd.DataFrame:
    if total > len(pairs):
        log.warning("%d %s-duplicate pairs; listing the first %d", total, kind, len(pairs))
    return pd.DataFrame(
        {
            "kind": [kind] * len(pairs),
            "distance": pd.Series(distances, dtype="int64"),
            "a": pd.Series([a for a, _ in pairs], dtype="int64"),
            "b": pd.Series([b for _, b in pairs], dtype="int64"),
        },
        columns=PAIR_COLUMNS,
    )


def describe_pairs(pairs: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The pairs with both paths, labels and splits, and the ``cross_class`` and ``leakage``
    flags (``images`` has ``path``, ``label`` and ``split``: "test", a fold, or ""); ``row_a``
    and ``row_b`` are the images' positions."""
    a, b = images.iloc[pairs["a"].to_numpy()], images.iloc[pairs["b"].to_numpy()]
    table = pd.DataFrame(
        {
            "kind": pairs["kind"].to_numpy(),
            "distance": pairs["distance"].to_numpy(),
            "path_a": a["path"].to_numpy(),
            "label_a": a["label"].to_numpy(),
            "split_a": a["split"].to_numpy(),
            "path_b": b["path"].to_numpy(),
            "label_b": b["label"].to_numpy(),
            "split_b": b["split"].to_numpy(),
            "row_a": pairs["a"].to_numpy(),
            "row_b": pairs["b"].to_numpy(),
        }
    )
    table["cross_class"] = table["label_a"] != table["label_b"]
    table["leakage"] = leaks(table["split_a"], table["split_b"])
    return table


def leaks(split_a: pd.Series, split_b: pd.Series) -> pd.Series:
    """True where one image is in the holdout and the other is in the data trained on."""
    assigned = (split_a != "") & (split_b != "")
    return assigned & ((split_a == TEST) != (split_b == TEST))


def scope_of(table: pd.DataFrame) -> pd.Series:
    """Each pair's gallery: ``leakage`` first, then ``cross_class``, else ``within_class``."""
    scope = pd.Series("within_class", index=table.index)
    scope[table["cross_class"]] = "cross_class"
    scope[table["leakage"]] = "leakage"
    return scope
