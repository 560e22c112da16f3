"""Waiting on the real worker and scheduler processes a test started (their logs are ``tmp_path/*.log``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

SAFETY_TIMEOUT = 180  # only so a broken process cannot hang the suite; not a performance limit


def wait_for(what: str, check, tmp_path: Path):
    """``check()``'s first true value; on giving up, fail showing the end of every process log."""
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in tmp_path.glob("*.log"))
    pytest.fail(f"{what} did not happen\n{logs}")
