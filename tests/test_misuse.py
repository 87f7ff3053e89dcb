"""No sequence of calls from Python crashes or hangs the interpreter: thousands of random
misuse programs (tests/misuse_programs.py: stale and shifted addresses, huge sizes, bad flags,
callbacks that free or raise, a file truncated under its views) run in child interpreters,
which must exit normally, in time, without a SystemError.

CI (PYALLOC_CI=1) runs the same seeds every time, so that whether a commit lands does not
depend on the draw; a local run starts at a random seed and so covers new ground each time
(a failure names the seed: `python tests/misuse_programs.py SEED SEED+1` replays it)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).with_name("misuse_programs.py")
CHUNK = 500  # seeds per child: about 3 s here
CHUNKS = 6
FIRST = 0 if os.environ.get("PYALLOC_CI") else random.randrange(1 << 30)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_misuse_never_crashes_the_interpreter(chunk):
    start = FIRST + chunk * CHUNK
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the checkout's pyalloc, as the tests use
    try:
        r = subprocess.run([sys.executable, str(PROGRAMS), str(start), str(start + CHUNK)],
                           capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        seeds = [line for line in out.splitlines() if line.startswith("SEED")]
        pytest.fail(f"hung in {seeds[-1] if seeds else f'SEED {start}'}")
    seeds = [line for line in r.stdout.splitlines() if line.startswith("SEED")]
    errors = [line for line in r.stdout.splitlines() if line.startswith("SYSTEMERROR")]
    assert r.returncode == 0, f"exit {r.returncode} in {seeds[-1] if seeds else start}"
    assert errors == []
    assert len(seeds) == CHUNK
