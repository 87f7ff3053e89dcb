"""The type stubs (pyalloc/_core.pyi and the package's annotations) agree with the module
that is built: mypy's stubtest imports it and compares every name, signature, and whether
a class can be subclassed. What it reports by design is in stubtest_allowlist.txt.

Needs mypy (``pip install '.[test]'``); skipped without it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_stubs_match_the_built_module():
    pytest.importorskip("mypy")
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the checkout's pyalloc, as the tests use
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "pyalloc", "--allowlist",
         str(ROOT / "tests" / "stubtest_allowlist.txt"), "--mypy-config-file", os.devnull],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
