"""rsmon.workflow.allocator: glibc tuning for block processing."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest


def test_tune_allocator_once_and_harmless():
    """In a fresh interpreter: True on glibc (False elsewhere), idempotent, and NumPy still works."""
    code = ("from rsmon.workflow.allocator import tune_allocator\n"
            "import numpy as np\n"
            "first = tune_allocator(); second = tune_allocator()\n"
            "blocks = [np.ones((512, 512), np.float32) * k for k in range(64)]\n"
            "assert sum(float(b[0, 0]) for b in blocks) == sum(range(64))\n"
            "print(first, second)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1]
    if sys.platform.startswith("linux") and "libc.so.6" in (ctypes.util.find_library("c") or ""):
        assert out[0] == "True"
    else:
        pytest.skip("not glibc: tune_allocator does nothing")
