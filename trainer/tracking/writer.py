"""A background writer: tracking work that need not hold up training runs on its own thread.

Uploads, figure rendering and metric batches are queued as tasks and run in order, one at a
time, so a fold's artifacts are written before the task that ends its run. Training goes on
meanwhile. Nothing is dropped:

* ``flush`` waits for every queued task and raises ``TrackingWriteError`` if any failed, so a
  failed upload fails the fit (and its runs) loudly at the end of the fit at the latest; a
  failure is also raised by the next ``submit``, so a long fit stops at the next epoch instead
  of training on without its record;
* ``drain`` is the error path (an exception, Ctrl-C or SIGTERM ended the fit): it waits for the
  queued tasks, up to a time limit for a store that no longer answers, and logs what could not
  be written instead of raising, so the original error is the one that surfaces.

While training runs, the writer's thread has the lowest priority on Linux (nice +19: a thread
has its own nice value there), so its work fills the moments a core would idle (batch
preparation, evaluation) instead of preempting a training thread, which also stalls that
thread's partners in a multi-threaded operator. A thread cannot raise its priority again, so
``flush`` and ``drain`` hand the tasks still queued to a new thread at the caller's priority
(after the task in progress): the end of a fit never waits behind busy cores at nice +19.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from trainer.errors import UserError, one_line

log = logging.getLogger(__name__)

DRAIN_SECONDS = 20.0  # the most an interrupted fit waits for queued uploads before it ends runs
NICENESS = 19  # added to the training-time writer thread's nice value; the kernel caps it at 19

Task = tuple[str, Callable[[], Any]]


class TrackingWriteError(UserError):
    """A queued write to the tracking store failed; the fit fails with this message."""


class BackgroundWriter:
    """Runs queued tracking tasks in order, one at a time, on a daemon thread."""

    def __init__(self, where: str) -> None:
        self.where = where  # the tracking URI, for messages
        self._queue: deque[Task] = deque()
        self._errors: list[tuple[str, BaseException]] = []
        self._pending: list[str] = []  # descriptions of queued tasks not yet done, in order
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a task queued, taken or done
        self._busy = False  # a task is running: the next waits for it
        self._shift = 0  # the thread started for this shift takes tasks; older ones retire
        self._started = False  # a thread works the current shift

    def submit(self, description: str, task: Callable[[], Any]) -> None:
        """Queue ``task``; raises the first earlier failure instead, if there was one."""
        self._raise_first_error()
        with self._changed:
            self._pending.append(description)
            self._queue.append((description, task))
            self._changed.notify_all()
            if not self._started:
                self._start(yielding=True)

    def flush(self) -> None:
        """Wait for every queued task; raise ``TrackingWriteError`` if any failed."""
        self._hurry()
        self._wait(deadline=None)
        self._raise_first_error()

    def drain(self, seconds: float = DRAIN_SECONDS) -> list[str]:
        """Wait up to ``seconds`` for the queued tasks without raising; returns the descriptions
        of the tasks that failed or did not finish (each is logged as a warning)."""
        self._hurry()
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
        """Retire the thread once the queue is empty (a later ``submit`` starts a new one)."""
        with self._changed:
            self._retire()

    def _hurry(self) -> None:
        """Hand what is still queued to a new thread at the caller's priority."""
        with self._changed:
            if self._queue:
                self._retire()
                self._start(yielding=False)

    def _start(self, yielding: bool) -> None:  # with the lock held
        shift, self._started = self._shift, True
        thread = threading.Thread(
            target=self._work, args=(shift, yielding), name="tracking-writer", daemon=True
        )
        thread.start()  # a new thread starts at its creator's priority

    def _retire(self) -> None:  # with the lock held
        self._shift += 1
        self._started = False
        self._changed.notify_all()

    def _wait(self, deadline: float | None) -> bool:
        with self._changed:
            while self._pending:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                # Short timed waits keep the main thread responsive to Ctrl-C and SIGTERM.
                self._changed.wait(timeout=0.1)
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

    def _work(self, shift: int, yielding: bool) -> None:
        if yielding:
            yield_to_training()
        while (item := self._take(shift)) is not None:
            description, task = item
            error: Exception | None = None
            try:
                task()
            except Exception as failure:  # kept for the main thread, which fails the fit
                error = failure
            finally:
                with self._changed:
                    if error is not None:
                        self._errors.append((description, error))
                    self._pending.remove(description)
                    self._busy = False
                    self._changed.notify_all()

    def _take(self, shift: int) -> Task | None:
        """The next task once none is running; None when this thread's shift is over."""
        with self._changed:
            while shift == self._shift:
                if self._queue and not self._busy:
                    self._busy = True
                    return self._queue.popleft()
                self._changed.wait()
            return None


def yield_to_training() -> None:
    """Lower the calling thread's priority by ``NICENESS`` where that is per thread (Linux);
    elsewhere ``setpriority`` would act on the whole process, so nothing is changed."""
    if not sys.platform.startswith("linux") or NICENESS <= 0:
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox may refuse it; the writer works as before
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + NICENESS))
