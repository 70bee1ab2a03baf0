"""The one exception type that reaches the user as a single line."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, bad config, missing file.

    The command line prints ``error: <message>`` on one line and exits non-zero, without a
    traceback (``--debug`` shows it). Messages say what is wrong, where, and how to fix it.
    """


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM: stop like Ctrl-C, ending runs KILLED."""
