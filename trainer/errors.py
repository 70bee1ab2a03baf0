"""The one exception type that reaches the user as a single line."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, bad config, missing file.

    The command line prints ``error: <message>`` on one line and exits non-zero, without a
    traceback (``--debug`` shows it). Messages say what is wrong, where, and how to fix it.
    """


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM: stop like Ctrl-C, ending runs KILLED."""


class DeviceOutOfMemoryError(UserError):
    """The device ran out of memory; the message says which settings to lower."""


def one_line(message: str | BaseException, limit: int | None = None) -> str:
    """The message's first line, cut to ``limit`` characters when given.

    For an error re-raised from a DataLoader worker (which carries the worker's traceback), the
    original error's own line. An exception without a message gives its type's name.
    """
    text = _first_line(str(message))
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text if limit is None else text[:limit]


def _first_line(message: str) -> str:
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if "Original Traceback" in message:
        name, _, text = lines[-1].partition(": ")
        return text if text and " " not in name else lines[-1]
    return lines[0]
