"""A background writer: tracking work that need not hold up training runs on its own thread.

Uploads, figure rendering and metric batches are queued as tasks and run in order, one at a
time, on a single thread, so a fold's artifacts are written before the task that ends its run.
Training goes on meanwhile. Nothing is dropped:

* ``flush`` waits for every queued task and raises ``TrackingWriteError`` if any failed, so a
  failed upload fails the fit (and its runs) loudly at the end of the fit at the latest; a
  failure is also raised by the next ``submit``, so a long fit stops at the next epoch instead
  of training on without its record;
* ``drain`` is the error path (an exception, Ctrl-C or SIGTERM ended the fit): it waits for the
  queued tasks, up to a time limit for a store that no longer answers, and logs what could not
  be written instead of raising, so the original error is the one that surfaces.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from trainer.errors import UserError, one_line

log = logging.getLogger(__name__)

DRAIN_SECONDS = 20.0  # the most an interrupted fit waits for queued uploads before it ends runs


class TrackingWriteError(UserError):
    """A queued write to the tracking store failed; the fit fails with this message."""


class BackgroundWriter:
    """Runs queued tracking tasks in order on one daemon thread (started on first use)."""

    def __init__(self, where: str) -> None:
        self.where = where  # the tracking URI, for messages
        self._tasks: queue.Queue[tuple[str, Callable[[], Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._errors: list[tuple[str, BaseException]] = []
        self._pending: list[str] = []  # descriptions of queued tasks not yet done, in order
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a task is done

    def submit(self, description: str, task: Callable[[], Any]) -> None:
        """Queue ``task``; raises the first earlier failure instead, if there was one."""
        self._raise_first_error()
        with self._lock:
            self._pending.append(description)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="tracking-writer", daemon=True)
            self._thread.start()
        self._tasks.put((description, task))

    def flush(self) -> None:
        """Wait for every queued task; raise ``TrackingWriteError`` if any failed."""
        self._wait(deadline=None)
        self._raise_first_error()

    def drain(self, seconds: float = DRAIN_SECONDS) -> list[str]:
        """Wait up to ``seconds`` for the queued tasks without raising; returns the descriptions
        of the tasks that failed or did not finish (each is logged as a warning)."""
        finished = self._wait(deadline=time.monotonic() + seconds)
        with self._lock:
            lost = [f"{what} ({one_line(error, 300)})" for what, error in self._errors]
            lost += [
                f"{what} (still being written after {seconds:.0f} s)" for what in self._pending
            ]
        for what in lost:
            log.warning("tracking: not written to %s: %s", self.where, what)
        if finished:
            self.close()
        return lost

    def close(self) -> None:
        """Stop the thread once the queue is empty (a later ``submit`` starts a new one)."""
        if self._thread is not None:
            self._tasks.put(None)
            self._thread = None

    def _wait(self, deadline: float | None) -> bool:
        with self._idle:
            while self._pending:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                # Short timed waits keep the main thread responsive to Ctrl-C and SIGTERM.
                self._idle.wait(timeout=0.1)
        return True

    def _raise_first_error(self) -> None:
        with self._lock:
            if not self._errors:
                return
            what, error = self._errors[0]
        raise TrackingWriteError(
            f"could not write {what} to the tracking store {self.where}: {one_line(error, 300)}; "
            "check that the store is reachable and has free space, then rerun"
        ) from error

    def _work(self) -> None:
        while (item := self._tasks.get()) is not None:
            description, task = item
            try:
                task()
            except Exception as error:  # kept for the main thread, which fails the fit with it
                with self._lock:
                    self._errors.append((description, error))
            finally:
                with self._idle:
                    self._pending.remove(description)
                    self._idle.notify_all()
