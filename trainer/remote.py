"""Remote services a run depends on: is the tracking server there, and URLs safe to print."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from functools import cache

from trainer.errors import UserError


@cache
def check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail with one line if no HTTP server answers at ``uri`` (any HTTP status will do)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (e.g. 401 behind authentication)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(
            f"cannot reach the MLflow tracking server at {redact(uri)} ({reason}); start it "
            "(make ui serves ./mlruns), point MLFLOW_TRACKING_URI or tracking.uri at a running "
            "one, or set tracking=false"
        ) from None


def redact(uri: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", uri)
