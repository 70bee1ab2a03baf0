"""Ctrl-C and SIGTERM: raised in the main thread at once, except while it writes to a database.

An exception raised by a signal handler in the middle of a SQLAlchemy session can leave its
transaction open on a connection that nothing closes any more. SQLite's write lock then stays
with the process, and each of its later writes (the very ones that end its runs KILLED and
fail its trial) waits out the busy timeout (20 s in MLflow) and fails; on PostgreSQL the rows
stay locked. So calls into a database-backed store run ``shielded``: a signal that arrives
meanwhile is kept, and raised in the main thread as soon as the call has returned.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from trainer.errors import Terminated

T = TypeVar("T")


@dataclass
class _Shield:
    depth: int = 0  # nesting of shielded calls on the main thread (signal handlers run on it)
    pending: int | None = None  # the first signal that came meanwhile, not raised yet


_shield = _Shield()


def install(once: bool = False) -> None:
    """Handle SIGINT (``KeyboardInterrupt``) and SIGTERM (``Terminated``) in this process.

    With ``once``, the first of them makes the process ignore later ones, so that the cleanup
    it starts (failing the trial, ending runs, waiting for workers) runs to its end.
    """
    handler = functools.partial(_on_signal, once)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception a signal becomes: ``Terminated`` for SIGTERM, else ``KeyboardInterrupt``."""
    return Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def shielded(active: bool = True) -> Iterator[None]:
    """Keep SIGINT and SIGTERM from interrupting the block; raise the first one after it.

    Only the main thread is ever interrupted, so elsewhere (or when not ``active``) this does
    nothing. Nested blocks raise at the end of the outermost one.
    """
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    _shield.depth += 1
    try:
        yield
    finally:
        _shield.depth -= 1
        if _shield.depth == 0 and _shield.pending is not None:
            signum, _shield.pending = _shield.pending, None
            raise interruption(signum)


def shield_methods(base: type[T], active: Callable[[Any], bool]) -> type[T]:
    """A subclass of ``base`` whose public methods run ``shielded`` when ``active(self)``."""

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with shielded(active(self)):  # looked up now: a method patched on ``base`` counts
                return getattr(base, name)(self, *args, **kwargs)

        return call

    methods = [
        (name, method)
        for name, method in inspect.getmembers(base, inspect.isfunction)
        if not name.startswith("_")
        and not isinstance(inspect.getattr_static(base, name), staticmethod)  # takes no self
    ]
    namespace: dict[str, Any] = {name: wrap(name, method) for name, method in methods}
    namespace["__doc__"] = f"{base.__name__} whose calls finish before a signal interrupts."
    return type(f"Shielded{base.__name__}", (base,), namespace)


def _on_signal(once: bool, signum: int, frame: FrameType | None) -> None:
    if once:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _shield.depth > 0:
        _shield.pending = _shield.pending or signum
        return
    raise interruption(signum)
