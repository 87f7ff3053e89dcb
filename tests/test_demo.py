"""`python -m pyalloc demo`: runs in a subprocess and prints the map the seed's example makes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEX = r"0x[0-9a-f]+"


def run_pyalloc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pyalloc", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def demo():
    result = run_pyalloc("demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def map_rows(text: str) -> list[tuple]:
    """(start, end, size, kind, state, protect, allocation_base) of every map row."""
    rows = []
    pattern = re.compile(rf"^({HEX})  ({HEX}) +(\S+ \S+)  (Private Data|Unusable|Reserved|Free|"
                         rf"Heap|Shareable|Mapped File) +(commit|reserve|free) *(\S*) *({HEX})?$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            start, end, size, kind, state, protect, base = m.groups()
            rows.append((int(start, 16), int(end, 16), size, kind, state, protect,
                         int(base, 16) if base else None))
    return rows


def test_demo_prints_the_seed_example(demo):
    m = re.search(rf"VirtualAlloc\(NULL, 8, MEM_COMMIT\|MEM_RESERVE, PAGE_READWRITE\) -> ({HEX})",
                  demo)
    assert m, demo
    a = int(m.group(1), 16)
    assert a % 0x10000 == 0
    assert (f"MEMORY_BASIC_INFORMATION(BaseAddress={a:#x}, AllocationBase={a:#x}, "
            "AllocationProtect=PAGE_READWRITE, RegionSize=0x1000, State=MEM_COMMIT, "
            "Protect=PAGE_READWRITE, Type=MEM_PRIVATE)") in demo
    assert f"MEMORY_BASIC_INFORMATION(BaseAddress={a + 0x1000:#x}, AllocationBase=0x0" in demo
    assert "State=MEM_FREE, Protect=PAGE_NOACCESS, Type=0x0)" in demo
    assert re.search(rf"GuardPageViolation\('guard page violation reading {HEX}'\)", demo)
    assert "releasing twice raised WinError: ERROR_INVALID_ADDRESS (487): " \
           "Attempt to access invalid address." in demo


def test_demo_map_rows(demo):
    first = re.search(rf"^<Process ({HEX})-({HEX}): 0 allocations", demo, re.M)
    assert first, demo
    top = int(first.group(2), 16) + 1
    rows = map_rows(demo)
    a = rows[0][0]
    b, c = a + 0x10000, a + 0x110000
    assert rows == [
        (a, a + 0x1000, "4 KiB", "Private Data", "commit", "PAGE_READWRITE", a),
        (a + 0x1000, b, "60 KiB", "Unusable", "free", "", None),      # the rest of a's slot
        (b, b + 0x4000, "16 KiB", "Private Data", "commit", "PAGE_READWRITE", b),  # guard gone
        (b + 0x4000, c, "1008 KiB", "Reserved", "reserve", "-", b),
        (c, c + 0x10000, "64 KiB", "Private Data", "commit", "PAGE_READWRITE", c),
        (c + 0x10000, top, "4.0 GiB", "Free", "free", "", None),
    ]
    # the allocation released twice came back at the same (lowest) address
    assert f"VirtualAlloc(NULL, 8, MEM_COMMIT|MEM_RESERVE, PAGE_READWRITE) -> {a:#x}" in demo
    assert f"write watch on {c:#x}: wrote 5 bytes at +0x2000; GetWriteWatch -> " \
           f"['{c + 0x2000:#x}'], granularity 4 KiB" in demo
    assert demo.rstrip().endswith("3 allocations, 1.1 MiB reserved, 84 KiB committed "
                                  "(peak 84 KiB)")


def test_command_line_errors():
    result = run_pyalloc()
    assert result.returncode == 2
    assert "usage: pyalloc" in result.stderr
    result = run_pyalloc("--help")
    assert result.returncode == 0 and "demo" in result.stdout
