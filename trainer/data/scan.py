"""Check a dataset once before training: its identity, unreadable images, cross-class copies.

Every file is read once to compute the data digest; the same pass finds byte-identical files
filed under two classes (a warning: one of the labels is wrong). Then every image is decoded
(large JPEGs at reduced scale, so this is fast) and ``data.on_bad_image`` decides what
happens to the ones that cannot be read: ``skip`` (the default) drops them with a warning and
lists them in the run folder (``skipped_images.csv``, also logged to MLflow); ``error`` stops
with one line naming the first one. The check is remembered per digest next to the split
files, so later folds, runs and trials on the same data do not decode everything again.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from trainer.data.dataset import Samples, printable
from trainer.data.images import ImageReadError, read_rgb
from trainer.errors import UserError
from trainer.runtime import available_cores

log = logging.getLogger(__name__)

SKIPPED_FILE = "skipped_images.csv"  # in the run folder when images were skipped


@dataclass(frozen=True)
class BadImage:
    """An image that cannot be used, and why."""

    path: str  # relative to the dataset root
    reason: str


_DIGESTS: dict[tuple[object, ...], str] = {}  # file signature -> digest, for later trials


def fingerprint(samples: Samples) -> str:
    """SHA-256 over every image's relative path, label and bytes: the data's identity.

    Unreadable files contribute their error instead of bytes. Warns about identical files
    under different classes. Within one process (the trials of a study) the files are read
    only once: while no file's size or modification time changes, the digest is reused.
    """
    signature = _signature(samples)
    if signature not in _DIGESTS:
        _DIGESTS[signature] = _hash_files(samples)
    return _DIGESTS[signature]


def _signature(samples: Samples) -> tuple[object, ...]:
    stats: list[object] = []
    for index, path in enumerate(samples.paths):
        try:
            status = path.stat()
            stats.append(
                (str(path), int(samples.labels[index]), status.st_size, status.st_mtime_ns)
            )
        except OSError as error:
            stats.append((str(path), int(samples.labels[index]), error.errno))
    return (samples.class_names, *stats)


def _hash_files(samples: Samples) -> str:
    digest = hashlib.sha256()
    classes_of: dict[bytes, set[str]] = defaultdict(set)
    examples: dict[bytes, list[str]] = defaultdict(list)
    for index, path in enumerate(samples.paths):
        label = samples.class_names[samples.labels[index]]
        relative = samples.relative(index)
        digest.update(f"{relative}\0{label}\0".encode(errors="surrogateescape"))
        try:
            content = hashlib.sha256(path.read_bytes()).digest()
        except OSError as error:
            digest.update(f"unreadable:{error.errno}".encode())
            continue
        digest.update(content)
        classes_of[content].add(label)
        examples[content].append(relative)
    _warn_cross_class_copies(classes_of, examples)
    return digest.hexdigest()


def _warn_cross_class_copies(
    classes_of: dict[bytes, set[str]], examples: dict[bytes, list[str]]
) -> None:
    copies = [examples[content] for content, labels in classes_of.items() if len(labels) > 1]
    if copies:
        log.warning(
            "%d image(s) appear with the same bytes under different classes, e.g. %s; "
            "one of the labels is wrong: remove or relabel them",
            len(copies),
            " and ".join(printable(name) for name in copies[0]),
        )


def find_bad_images(samples: Samples, record: Path) -> list[BadImage]:
    """Decode every image (once per dataset: the result is kept in ``record``)."""
    if record.exists():
        with record.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            return [BadImage(row["path"], row["reason"]) for row in csv.DictReader(handle)]
    with ThreadPoolExecutor(min(8, available_cores())) as pool:  # OpenCV decodes without the GIL
        problems = list(pool.map(_problem, samples.paths))
    bad = [
        BadImage(samples.relative(index), problem)
        for index, problem in enumerate(problems)
        if problem is not None
    ]
    write_bad_images(bad, record)
    return bad


def _problem(path: Path) -> str | None:
    try:
        read_rgb(path, at_least=8)
    except ImageReadError as error:
        return error.reason
    return None


def write_bad_images(bad: list[BadImage], path: Path) -> None:
    """A ``path,reason`` CSV of ``bad`` (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows([item.path, item.reason] for item in bad)
    os.replace(temporary, path)


def apply_policy(samples: Samples, bad: list[BadImage], policy: str) -> Samples:
    """The samples without ``bad`` (policy ``skip``), or a one-line error (``error``)."""
    if not bad:
        return samples
    first = bad[0]
    if policy == "error":
        raise UserError(
            f"{len(bad)} unreadable image(s) in {samples.root}, first {printable(first.path)}: "
            f"{first.reason}; fix or remove them, or set data.on_bad_image=skip"
        )
    log.warning(
        "skipping %d unreadable image(s) (data.on_bad_image=skip), e.g. %s: %s; "
        "the list is in the run folder's %s",
        len(bad),
        printable(first.path),
        first.reason,
        SKIPPED_FILE,
    )
    dropped = {item.path for item in bad}
    keep = [i for i, path in enumerate(samples.relative_paths) if path not in dropped]
    return replace(
        samples,
        paths=tuple(samples.paths[i] for i in keep),
        labels=samples.labels[keep],
    )
