"""Test-run settings shared by every test module.

``make test`` runs the suite on two pytest-xdist workers, a module's tests all on one
(``--dist loadfile``), so each module fixture (simulated scenes, real-data runs) is made once. The
modules that use the one PostgreSQL test database (``RSMON_TEST_POSTGRES_URL``, set by
``.ci/run``; ``rsmon.alerts.testing.reset_postgres`` drops its tables) take turns: each holds a
file lock while it runs, so two of them never work on the database at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

#: What marks a module as using the PostgreSQL test database (its source names one of these).
POSTGRES_USES = ("RSMON_TEST_POSTGRES_URL", "ENV_TEST_POSTGRES", "open_test_store", "reset_postgres")


@lru_cache(maxsize=None)
def _uses_postgres(module_file: str) -> bool:
    text = Path(module_file).read_text(encoding="utf-8")
    return any(use in text for use in POSTGRES_USES)


@pytest.fixture(scope="module", autouse=True)
def _postgres_modules_take_turns(request):
    url = os.environ.get("RSMON_TEST_POSTGRES_URL")
    if not url or not os.environ.get("PYTEST_XDIST_WORKER") or not _uses_postgres(str(request.path)):
        yield
        return
    lock = Path(tempfile.gettempdir()) / f"rsmon-test-postgres-{hashlib.sha256(url.encode()).hexdigest()[:16]}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the module is done (or the worker dies)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
