"""Commands start without touching the network."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import urllib.request
calls = []
def record(self, url, *args, **kwargs):
    calls.append(getattr(url, "full_url", url))
    raise OSError("no network in this test")
urllib.request.OpenerDirector.open = record
import trainer.data.transforms
print(len(calls), calls)
"""


def test_importing_the_transforms_makes_no_network_request() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 []"
