"""Where a study lives: a journal file beside the tracking store by default, or a database.

* default: ``mlruns/optuna/journal.log`` (Optuna's JournalStorage, safe for several processes
  on one machine; SQLite is not, for parallel optimisation);
* ``--storage PATH`` (any path that is not a URL): a journal file there;
* ``--storage postgresql://…`` (or ``mysql://``, ``sqlite:///`` for one process): RDB storage
  with heartbeats, so a worker that dies mid-trial has its trial failed and retried.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from trainer.errors import UserError, one_line
from trainer.interrupts import shield_methods
from trainer.remote import redact

log = logging.getLogger(__name__)

DEFAULT_JOURNAL = Path("mlruns") / "optuna" / "journal.log"
# A worker's heartbeat interval on RDB storage, and the silence after which its RUNNING trial
# is failed and retried; also how long a RUNNING trial that names no worker is given before it
# is failed (environment variables, e.g. for tests that kill workers).
HEARTBEAT_SECONDS = int(os.environ.get("STUDIES_HEARTBEAT_SECONDS", "30"))
GRACE_SECONDS = int(os.environ.get("STUDIES_GRACE_SECONDS", "120"))
_URL = re.compile(r"^[a-z][a-z0-9+]*://")
# Each call finishes before Ctrl-C or SIGTERM interrupts the main thread (trainer.interrupts):
# one cut short can leave a database transaction open, or the journal's lock file taken, and
# the cleanup that fails the interrupted trial would then wait on this very process.
ShieldedJournalStorage = shield_methods(JournalStorage, lambda storage: True)
ShieldedRDBStorage = shield_methods(RDBStorage, lambda storage: True)


@dataclass(frozen=True)
class StorageHandle:
    """An opened storage with the description that goes into tags and logs."""

    storage: BaseStorage
    url: str  # as given, password removed
    local_lock: Path  # file lock that serialises this machine's workers (see ``exclusive``)
    heartbeat: bool  # dead workers' trials are detected by heartbeats (RDB storage)

    def exclusive(self) -> FileLock:
        """The study's lock among this machine's processes, held (``with``) for a
        read-then-write that must not interleave with another worker's: creating a trial,
        creating the study run. Workers on other machines sharing a database are not covered."""
        return FileLock(self.local_lock)


def open_storage(url: str | None) -> StorageHandle:
    """Open the journal file or database named by ``url`` (None: the default journal)."""
    if url is None or not _URL.match(url):
        path = Path(url) if url else DEFAULT_JOURNAL
        path = path.expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        file_lock = JournalFileOpenLock(str(path) + ".lock")
        journal = ShieldedJournalStorage(JournalFileBackend(str(path), lock_obj=file_lock))
        return StorageHandle(journal, str(path), path.with_name(path.name + ".trials.lock"), False)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = ShieldedRDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except Exception as exc:  # SQLAlchemy's connection and driver errors have no common base
        raise UserError(
            f"cannot open study storage {redact(url)}: {one_line(exc, 200)}; check the URL "
            "(--storage or storage: in the study file) and that the database is running"
        ) from exc
    digest = hashlib.sha256(redact(url).encode()).hexdigest()[:16]
    lock = DEFAULT_JOURNAL.parent.resolve() / f"rdb-{digest}.trials.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    return StorageHandle(storage, redact(url), lock, True)


def load_or_create_study(
    handle: StorageHandle,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """The study ``name`` in the storage, created (maximising) if it is not there yet."""
    return optuna.create_study(
        storage=handle.storage,
        study_name=name,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
