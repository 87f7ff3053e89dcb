"""Layer 4 through Python: UCRT's malloc family and the debug CRT, heap.md sections 1.12-1.14 and
1.16, one test (or group) per fact, named after its number.

A release CRT block is one HeapAlloc on the process heap, so the heap's own functions (HeapSize,
HeapWalk) see it; a debug CRT block is _CrtMemBlockHeader (48 bytes) + data + 4 bytes of
no-man's land, read here with Process.read. Where the CRT returns NULL or -1 and sets errno,
pyalloc raises CrtError with .errno (CrtMemoryError for ENOMEM, also a MemoryError;
CrtInvalidParameter for EINVAL, also a ValueError); where the release CRT would free or size a
pointer that is no block (undefined on Windows), pyalloc's contract is EINVAL. The debug CRT's
reports are CrtReport warnings (pytest turns warnings into errors: each test expects its own).

Facts without a test here, and why: 66, 77, 79 do not exist in heap.md; 72 is msvcrt's x86
small-block heap, which UCRT and x64 do not have; 83 is msvcrt.dll's operator new
(tests/test_new.py tests vcruntime's, fact 84).
"""
from __future__ import annotations

import errno
import gc
import os
import pickle
import re
import struct
import subprocess
import sys
import threading
import warnings

import pytest

import pyalloc as pa

P = 8
HDR = 48  # sizeof(_CrtMemBlockHeader) on x64
NML = 4  # no-man's land
THIS = __file__


def line_of(marker: str) -> int:
    """The line of this file that contains marker (a call site recorded by the debug CRT)."""
    with open(THIS) as f:
        for n, text in enumerate(f, 1):
            if marker in text and "line_of(" not in text:
                return n
    raise AssertionError(marker)


def header(p: pa.Process, block: int) -> dict:
    """The _CrtMemBlockHeader before a debug block (wintypes.h, x64 layout)."""
    raw = p.read(block - HDR, HDR)
    nxt, prev, file, line, use, size, request = struct.unpack("<QQQiiQi", raw[:44])
    return dict(next=nxt, prev=prev, file=file, line=line, block_use=use, size=size,
                request=request, gap=raw[44:])


@pytest.fixture
def rel():
    """A process with the release CRT."""
    p = pa.Process(crt_debug=False)
    yield p
    gc.collect()
    p.close()


@pytest.fixture
def dbg():
    """A process with the debug CRT; heap_guard off, so that tests can damage what they like."""
    p = pa.Process(crt_debug=True, heap_guard=False)
    yield p
    gc.collect()
    p.close()


def heap(p: pa.Process):
    return p.GetProcessHeap()


# ---- the Process option ----


def test_crt_debug_option():
    with pa.Process() as a, pa.Process(crt_debug=True) as b, pa.Process(crt_debug=False) as c:
        assert isinstance(a.crt_debug, bool)
        assert b.crt_debug is True
        assert c.crt_debug is False
    with pytest.raises(ValueError):
        a.crt_debug


def run_on_debug_crt(path, source: str) -> subprocess.CompletedProcess:
    """Runs the Python program source (written to path) with PYALLOC_CRT_DEBUG=1: its current
    process on the debug CRT. It must exit normally."""
    path.write_text(source)
    env = dict(os.environ, PYALLOC_CRT_DEBUG="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(pa.__file__)),
                                           os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True,
                          check=True)


def test_env_var_gives_the_current_process_the_debug_crt(tmp_path):
    """PYALLOC_CRT_DEBUG=1 (read by the C layer) applies to the current process."""
    out = run_on_debug_crt(tmp_path / "leak.py",
                           "import pyalloc as pa\n"
                           "a = pa.malloc(3)\n"
                           "(leak,) = pa._CrtDumpMemoryLeaks()\n"
                           "print(pa.current_process().crt_debug, leak.line,\n"
                           "      leak.file == __file__)\n")
    assert out.stdout.split() == ["True", "2", "True"]
    assert "Detected memory leaks!" in out.stderr


def test_current_process_dumps_its_leaks_when_python_ends_with_leak_check_flag(tmp_path):
    """The current process is never closed: with _CRTDBG_LEAK_CHECK_DF its debug CRT dumps the
    leaks when the program ends, after the atexit functions (UCRT's termination), so a block
    an atexit function frees is no leak."""
    script = tmp_path / "exit_leak.py"
    out = run_on_debug_crt(script,
                           "import atexit, pyalloc as pa\n"
                           "pa._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF)\n"
                           "kept = pa.malloc(40)\n"
                           "atexit.register(pa.free, pa.malloc(24))\n")
    assert re.fullmatch(r"Detected memory leaks!\nDumping objects ->\n"
                        rf"{re.escape(str(script))}\(3\) : \{{1\}} normal block at "
                        r"0x[0-9A-F]{16}, 40 bytes long.\n Data: < {16}> (CD ){16}\n"
                        r"Object dump complete.\n", out.stderr), out.stderr

    # Also when the current Process object outlives the interpreter (a leaked reference): the
    # dump comes after Python is gone, so it must not wait for the binding to print it.
    out = run_on_debug_crt(script,
                           "import ctypes, pyalloc as pa\n"
                           "pa._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF)\n"
                           "kept = pa.malloc(40)\n"
                           "ctypes.pythonapi.Py_IncRef(ctypes.py_object(pa.current_process()))\n")
    assert "(3) : {1} normal block at 0x" in out.stderr, out.stderr

    out = run_on_debug_crt(script, "import pyalloc as pa\nkept = pa.malloc(40)\n")  # no flag
    assert out.stderr == ""


def test_closed_process_raises(rel):
    rel.close()
    for call in (lambda: rel.malloc(1), lambda: rel.free(None), lambda: rel._msize(1),
                 lambda: rel._CrtCheckMemory(), lambda: rel.calloc(1, 1)):
        with pytest.raises(ValueError, match="closed"):
            call()


# ---- 1.12 malloc / calloc / realloc / free / _msize ----


def test_fact65_zero_sizes_and_realloc_null(rel):
    """W-MT test_malloc: malloc(0) and realloc(NULL, 0) are blocks; realloc(p, 0) frees p."""
    z = rel.malloc(0)
    assert z
    a = rel.realloc(None, 10)
    assert a and rel._msize(a) == 10
    b = rel.realloc(a, 20)
    assert b and rel._msize(b) == 20
    assert rel.realloc(b, 0) is None
    assert not rel.HeapValidate(heap(rel), 0, b)  # really freed
    c = rel.realloc(0, 0)
    assert c and rel._msize(c) == 1
    rel.free(z)
    rel.free(c)


def test_fact67_malloc_zero_is_one_byte(rel, dbg):
    """S-MALLOC: UCRT bumps 0 to 1 byte (the debug CRT keeps the exact request, fact 94)."""
    assert rel._msize(rel.malloc(0)) == 1
    assert dbg._msize(dbg.malloc(0)) == 0
    assert dbg._CrtDumpMemoryLeaks()[0].size == 0


def test_fact67_beyond_heap_maxreq_is_enomem(rel):
    assert pa._HEAP_MAXREQ == 0xFFFFFFFFFFFFFFE0
    for n in (pa._HEAP_MAXREQ + 1, 2**64 - 1, 1 << 50):
        with pytest.raises(pa.CrtMemoryError) as info:
            rel.malloc(n)
        assert info.value.errno == errno.ENOMEM
        assert isinstance(info.value, MemoryError) and isinstance(info.value, OSError)
    with pytest.raises(OverflowError):
        rel.malloc(2**64)
    with pytest.raises(OverflowError):
        rel.malloc(-1)
    with pytest.raises(TypeError):
        rel.malloc(1.5)


@pytest.mark.parametrize("size", [1, 7, 16, 64, 1000, 16384, 20000, 0xFEFF0, 0x100000])
def test_fact67_msize_is_heapsize(rel, size):
    """A CRT block is one HeapAlloc on the process heap: HeapSize(GetProcessHeap(), 0, p) ==
    _msize(p), also for blocks the LFH serves and for large blocks."""
    p = rel.malloc(size)
    assert rel._msize(p) == size
    assert rel.HeapSize(heap(rel), 0, p) == size
    assert rel.HeapValidate(heap(rel), 0, p)
    rel.free(p)
    assert not rel.HeapValidate(heap(rel), 0, p)


def test_heapwalk_sees_crt_blocks(rel):
    blocks = {rel.malloc(n): n for n in (8, 100, 5000, 0x200000)}
    busy = {e.lpData: e.cbData for e in rel.HeapWalk(heap(rel))
            if e.wFlags & pa.PROCESS_HEAP_ENTRY_BUSY}
    for address, n in blocks.items():
        assert busy.get(address) == n
        rel.free(address)
    busy = {e.lpData for e in rel.HeapWalk(heap(rel)) if e.wFlags & pa.PROCESS_HEAP_ENTRY_BUSY}
    assert not busy & blocks.keys()


def test_fact68_calloc(rel):
    """S-RECALLOC: the overflow rule, and zeroed memory even where a block was before."""
    a = rel.malloc(64)
    rel.write(a, b"\xAB" * 64)
    rel.free(a)
    b = rel.calloc(16, 4)
    assert rel.read(b, 64) == bytes(64)
    assert rel._msize(rel.calloc(0, 5)) == 1
    assert rel._msize(rel.calloc(5, 0)) == 1
    for count, size in ((2**62, 8), (2**32, 2**32), (pa._HEAP_MAXREQ, 2)):
        with pytest.raises(pa.CrtMemoryError) as info:
            rel.calloc(count, size)
        assert info.value.errno == errno.ENOMEM


def test_fact68_realloc_failure_leaves_block(rel):
    a = rel.malloc(32)
    rel.write(a, bytes(range(32)))
    with pytest.raises(pa.CrtMemoryError):
        rel.realloc(a, 1 << 50)
    assert rel._msize(a) == 32 and rel.read(a, 32) == bytes(range(32))
    b = rel.realloc(a, 100000)  # moves: the contents follow
    assert rel.read(b, 32) == bytes(range(32))
    rel.free(b)


def test_fact69_msize_null_is_einval(rel, dbg):
    for p in (rel, dbg):
        with pytest.raises(pa.CrtInvalidParameter) as info:
            p._msize(None)
        assert info.value.errno == errno.EINVAL
        assert isinstance(info.value, ValueError)
        assert info.value.function == "_msize"


def test_fact70_msize_of_a_non_block_fails(rel):
    a = rel.malloc(64)
    for bad in (a + 16, 0x1234, rel.VirtualAlloc(None, 4096, pa.MEM_COMMIT | pa.MEM_RESERVE,
                                                  pa.PAGE_READWRITE)):
        with pytest.raises(pa.CrtError):
            rel._msize(bad)


def test_fact71_heap_handle_is_the_process_heap(rel):
    h = rel._get_heap_handle()
    assert h == rel.GetProcessHeap() and int(h) == int(rel.GetProcessHeap())
    assert int(pa._get_heap_handle()) == int(pa.GetProcessHeap())


def test_free_null_and_bad_pointers(rel):
    rel.free(None)
    rel.free(0)
    a = rel.malloc(16)
    rel.free(a)
    for bad in (a, a + 8, 0x1000):  # a double free, an inner pointer, a wild one
        with pytest.raises(pa.CrtInvalidParameter) as info:
            rel.free(bad)
        assert info.value.errno == errno.EINVAL
    assert rel.HeapValidate(heap(rel))


def test_free_of_an_exported_block_is_buffer_error(rel):
    a = rel.malloc(64)
    view = rel.view(a, 64)
    for call in (lambda: rel.free(a), lambda: rel.realloc(a, 1000), lambda: rel.realloc(a, 0),
                 lambda: rel._expand(a, 8)):
        with pytest.raises(BufferError):
            call()
    view.release()
    rel.free(a)


def test_module_level_functions_act_on_the_current_process():
    cur = pa.current_process()
    a = pa.malloc(24)
    assert pa._msize(a) == 24 == cur._msize(a)
    extra = HDR + NML if cur.crt_debug else 0  # PYALLOC_CRT_DEBUG=1: debug blocks
    assert pa.HeapSize(pa.GetProcessHeap(), 0, a - (HDR if extra else 0)) == 24 + extra
    a = pa.realloc(a, 48)
    pa.free(a)
    b = pa.calloc(3, 3)
    assert pa.read(b, 9) == bytes(9)
    pa.free(b)
    c = pa._aligned_malloc(10, 64)
    assert c % 64 == 0
    pa._aligned_free(c)


def test_keywords_and_errors_are_picklable(rel):
    a = rel.malloc(size=8)
    assert rel._msize(address=a) == 8
    rel.free(address=a)
    with pytest.raises(TypeError):
        rel.malloc(8, 9)
    with pytest.raises(TypeError):
        rel.malloc(bytes=8)
    for e in (pa.CrtMemoryError(12, "malloc"), pa.CrtInvalidParameter(22, "_msize")):
        f = pickle.loads(pickle.dumps(e))
        assert type(f) is type(e) and f.errno == e.errno and str(f) == str(e)
    assert str(pa.CrtError(22, "_msize")) == "[Errno 22] _msize: Invalid argument"


def test_threads_share_the_crt(rel):
    errors = []

    def work():
        try:
            for n in range(1, 500):
                a = rel.malloc(n)
                rel.write(a, b"x" * n)
                rel.free(a)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rel.HeapValidate(heap(rel))


# ---- 1.13 _expand / _recalloc / aligned allocation ----


def test_fact73_expand(rel):
    with pytest.raises(pa.CrtInvalidParameter):
        rel._expand(None, 10)
    a = rel.malloc(100)
    with pytest.raises(pa.CrtMemoryError):
        rel._expand(a, pa._HEAP_MAXREQ + 1)
    assert rel._expand(a, 50) == a  # a shrink stays in place (or keeps the LFH slot)
    assert rel._msize(a) in (50, 100)
    big = rel.malloc(5000)  # back end
    assert rel._expand(big, 4000) == big and rel._msize(big) == 4000
    with pytest.raises(pa.CrtError):
        rel._expand(big, 1 << 40)
    assert rel._msize(big) == 4000


def test_fact74_recalloc(rel):
    a = rel.malloc(8)
    rel.write(a, b"\xff" * 8)
    b = rel._recalloc(a, 4, 8)
    assert rel.read(b, 32) == b"\xff" * 8 + bytes(24)
    with pytest.raises(pa.CrtMemoryError):
        rel._recalloc(b, 2**62, 8)
    assert rel._msize(b) == 32  # untouched
    assert rel._recalloc(b, 0, 8) is None  # realloc(p, 0): freed
    c = rel._recalloc(None, 2, 2)
    assert rel.read(c, 4) == bytes(4)


@pytest.mark.parametrize("alignment", [1, 2, 4, 8, 16, 32, 64, 128, 4096, 1 << 16])
def test_fact75_aligned_malloc(rel, alignment):
    a = rel._aligned_malloc(256, alignment)
    assert a % alignment == 0
    assert rel._aligned_msize(a, alignment, 0) == 256
    rel.write(a, b"\x5a" * 256)
    rel._aligned_free(a)


@pytest.mark.parametrize("alignment", [0, 3, 127, 48])
def test_fact76_bad_alignment_is_einval(rel, alignment):
    """UCRT: 0 is no power of two either (msvcrt.dll accepted it)."""
    with pytest.raises(pa.CrtInvalidParameter) as info:
        rel._aligned_malloc(256, alignment)
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("size,alignment,offset", [(100, 64, 0), (100, 64, 8), (100, 32, 4),
                                                   (7, 16, 3), (1000, 4096, 1)])
def test_fact78_aligned_layout(rel, size, alignment, offset):
    """S-ALIGN: base = malloc(size + P + g + m), the returned pointer is ((base + P + g + m +
    off) & ~m) - off, and the base pointer sits in the P bytes at ((ret & ~(P - 1)) - P)."""
    r = rel._aligned_offset_malloc(size, alignment, offset)
    assert (r + offset) % alignment == 0
    g = (0 - offset) & (P - 1)
    m = max(alignment, P) - 1
    (base,) = struct.unpack("<Q", rel.read((r & ~(P - 1)) - P, P))
    assert (r & ~(P - 1)) - P == r - g - P
    assert rel._msize(base) == size + P + g + m  # the base is a plain CRT block
    assert rel.HeapSize(heap(rel), 0, base) == size + P + g + m
    assert r == ((base + P + g + m + offset) & ~m) - offset
    assert rel._aligned_msize(r, alignment, offset) == size
    rel._aligned_free(r)
    assert not rel.HeapValidate(heap(rel), 0, base)


def test_fact78_offset_must_be_below_size(rel):
    with pytest.raises(pa.CrtInvalidParameter):
        rel._aligned_offset_malloc(8, 16, 8)
    assert rel._aligned_offset_malloc(8, 16, 7)


def test_fact78_aligned_realloc_and_free(rel):
    rel._aligned_free(None)
    a = rel._aligned_realloc(None, 40, 64)  # _aligned_malloc
    assert a % 64 == 0
    rel.write(a, bytes(range(40)))
    b = rel._aligned_realloc(a, 5000, 64)
    assert b % 64 == 0 and rel.read(b, 40) == bytes(range(40))
    assert rel._aligned_msize(b, 64, 0) == 5000
    assert rel._aligned_realloc(b, 0, 64) is None  # frees
    with pytest.raises(pa.CrtInvalidParameter):
        rel._aligned_realloc(rel._aligned_malloc(8, 16), 8, 3)


def test_aligned_and_plain_routines_do_not_mix(rel):
    """Windows would free whatever the slot below the pointer names; pyalloc refuses."""
    plain = rel.malloc(64)
    with pytest.raises(pa.CrtInvalidParameter):
        rel._aligned_free(plain)
    with pytest.raises(pa.CrtInvalidParameter):
        rel._aligned_msize(plain, 16, 0)
    aligned = rel._aligned_malloc(64, 64)
    with pytest.raises(pa.CrtInvalidParameter):
        rel.free(aligned)
    rel.free(plain)
    rel._aligned_free(aligned)
    assert rel.HeapValidate(heap(rel))


def test_fact80_aligned_msize_null(rel):
    with pytest.raises(pa.CrtInvalidParameter):
        rel._aligned_msize(None, 16, 0)


# ---- 1.14 new mode and new handler ----


def test_fact81_set_new_mode(rel):
    assert rel._query_new_mode() == 0
    assert rel._set_new_mode(1) == 0
    assert rel._set_new_mode(0) == 1
    for bad in (2, -1):
        with pytest.raises(pa.CrtInvalidParameter):
            rel._set_new_mode(bad)
    assert rel._query_new_mode() == 0


@pytest.fixture
def tight():
    """A release process with an 8 MiB commit limit and 5 MiB of it in one CRT block."""
    p = pa.Process(crt_debug=False, commit_limit=8 << 20)
    p.reserve = p.malloc(5 << 20)
    yield p
    p.set_new_handler(None)
    p.close()


def test_fact81_new_mode_calls_the_handler_from_malloc(tight):
    calls = []

    def handler(size):
        calls.append(size)
        if tight.reserve:
            tight.free(tight.reserve)
            tight.reserve = None
            return True  # retry
        return False

    assert tight.set_new_handler(handler) is None
    with pytest.raises(pa.CrtMemoryError):
        tight.malloc(5 << 20)  # new mode 0: the handler is not asked
    assert calls == []
    tight._set_new_mode(1)
    a = tight.malloc(5 << 20)  # the handler makes room, the retry succeeds
    assert a and calls == [5 << 20]
    with pytest.raises(pa.CrtMemoryError) as info:
        tight.calloc(5, 1 << 20)  # nothing left to give: falsy gives up
    assert info.value.errno == errno.ENOMEM
    assert calls == [5 << 20, 5 << 20]  # calloc asks too
    with pytest.raises(pa.CrtMemoryError):
        tight.realloc(a, 6 << 20)  # and realloc
    assert len(calls) == 3 and tight._msize(a) == 5 << 20
    assert tight.set_new_handler(None) is handler


def test_fact82_handler_that_raises_gives_up(tight):
    def handler(size):
        raise LookupError("no memory to give")

    tight.set_new_handler(handler)
    tight._set_new_mode(1)
    with pytest.raises(pa.CrtMemoryError) as info:
        tight.realloc(None, 5 << 20)
    assert isinstance(info.value.__cause__, LookupError)

    def interrupt(size):
        raise KeyboardInterrupt

    tight.set_new_handler(interrupt)
    with pytest.raises(KeyboardInterrupt):
        tight.malloc(5 << 20)
    with pytest.raises(TypeError):
        tight.set_new_handler(42)


def test_handler_cannot_close_the_process(tight):
    seen = []

    def handler(size):
        with pytest.raises(RuntimeError, match="new handler"):
            tight.close()
        seen.append(tight.closed)
        return False

    tight.set_new_handler(handler)
    with pytest.raises(pa.BadAlloc):
        tight.operator_new(5 << 20)
    assert seen == [False]


# ---- 1.16 the debug CRT ----


def test_fact88_block_header(dbg):
    a = dbg.malloc(10)  # fact88-site
    h = header(dbg, a)
    assert h["size"] == 10 and h["block_use"] == pa._NORMAL_BLOCK and h["request"] == 1
    assert h["line"] == line_of("# fact88-site") and h["file"] != 0
    assert h["next"] == 0 and h["prev"] == 0  # the only block of the list
    assert h["gap"] == b"\xfd" * NML
    # one HeapAlloc: header + data + no-man's land
    assert dbg.HeapSize(heap(dbg), 0, a - HDR) == HDR + 10 + NML
    b = dbg.malloc(20)
    assert header(dbg, b)["next"] == a - HDR and header(dbg, a)["prev"] == b - HDR
    assert header(dbg, b)["request"] == 2
    dbg.free(a)
    dbg.free(b)


def test_fact89_fills(dbg):
    a = dbg.malloc(12)
    assert dbg.read(a - NML, NML + 12 + NML) == b"\xfd" * 4 + b"\xcd" * 12 + b"\xfd" * 4
    dbg.write(a, b"abcd")
    b = dbg.realloc(a, 20)  # growth is 0xCD, the old bytes kept
    assert dbg.read(b, 24) == b"abcd" + b"\xcd" * 16 + b"\xfd" * 4
    c = dbg.calloc(3, 4)  # exactly n bytes zeroed
    assert dbg.read(c, 16) == bytes(12) + b"\xfd" * 4
    dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_DELAY_FREE_MEM_DF)
    dbg.free(b)  # kept as a _FREE_BLOCK filled with 0xDD
    assert dbg.read(b, 20) == b"\xdd" * 20
    assert dbg._CrtReportBlockType(b) == pa._FREE_BLOCK
    r = dbg._aligned_malloc(40, 32)  # {base, 0xED * P} below the aligned pointer
    slot = (r & ~(P - 1)) - 2 * P
    base, gap = struct.unpack("<Q8s", dbg.read(slot, 2 * P))
    assert gap == b"\xed" * P and header(dbg, base)["block_use"] == pa._NORMAL_BLOCK
    assert dbg._aligned_msize(r, 32, 0) == 40
    dbg._aligned_free(r)
    dbg.free(c)


def test_fact90_block_types_requests_and_ignore_blocks(dbg):
    assert dbg._CrtSetBreakAlloc(-1) == -1  # _crtBreakAlloc starts at -1
    a = dbg.malloc(1)
    assert header(dbg, a)["request"] == 1
    assert dbg._CrtReportBlockType(a) == pa._NORMAL_BLOCK
    assert dbg._CrtReportBlockType(0x1000) == -1
    dbg._CrtSetDbgFlag(0)  # _CRTDBG_ALLOC_MEM_DF off: ignore blocks
    b = dbg.malloc(5)
    h = header(dbg, b)
    assert h["request"] == 0 and h["line"] == 0xFEDCBABC - 2**32 and h["block_use"] == 3
    assert [x.address for x in dbg._CrtDumpMemoryLeaks()] == [a]  # not listed
    dbg.free(b)
    dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF)
    assert header(dbg, dbg.malloc(1))["request"] == 3  # requests counted on
    assert pa._CRT_BLOCK == 2 and pa._IGNORE_BLOCK == 3 and pa._CLIENT_BLOCK == 4


def test_fact91_dbg_flag(dbg, rel):
    assert dbg._CrtSetDbgFlag(pa._CRTDBG_REPORT_FLAG) == pa._CRTDBG_ALLOC_MEM_DF
    new = pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF | pa._CRTDBG_CHECK_EVERY_16_DF
    assert dbg._CrtSetDbgFlag(new) == pa._CRTDBG_ALLOC_MEM_DF
    assert dbg._CrtSetDbgFlag(pa._CRTDBG_REPORT_FLAG) == new
    with pytest.raises(pa.CrtInvalidParameter):
        dbg._CrtSetDbgFlag(0x40)  # unknown low bit: EINVAL, flags unchanged
    assert dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF) == new
    assert rel._CrtSetDbgFlag(pa._CRTDBG_REPORT_FLAG) == 0  # crtdbg.h without _DEBUG


def test_fact92_free_reports_damaged_no_mans_land(dbg):
    a = dbg.malloc(16)  # fact92-site
    dbg.write(a + 16, b"!")  # one byte past the end
    with pytest.warns(pa.CrtReport, match=r"HEAP CORRUPTION DETECTED: after Normal block \(#1\)") \
            as record:
        dbg.free(a)
    report = record[0].message
    assert report.kind == pa.PA_CRT_REPORT_CORRUPTION and report.type == pa._CRT_ERROR
    assert report.address == a and report.request == 1
    assert f"Memory allocated at {THIS}({line_of('# fact92-site')})" in str(report)
    assert record[0].filename == THIS  # at the line that freed
    assert not dbg._CrtDumpMemoryLeaks()  # freed all the same
    b = dbg.malloc(16)
    dbg.write(b - 1, b"?")  # before the start
    with pytest.warns(pa.CrtReport, match="before Normal block"):
        dbg.free(b)


def test_fact92_bad_pointers_are_reported_not_freed(dbg):
    a = dbg.malloc(8)
    dbg.free(a)
    with pytest.warns(pa.CrtReport, match=r"_CrtIsValidHeapPointer\(block\)") as record:
        dbg.free(a)  # double free
    assert record[0].message.kind == pa.PA_CRT_REPORT_BAD_POINTER
    assert record[0].message.type == pa._CRT_ASSERT
    with pytest.warns(pa.CrtReport):
        dbg.free(0x12345678)
    r = dbg._aligned_malloc(16, 64)
    with pytest.warns(pa.CrtReport, match="allocated by aligned routines") as record:
        with pytest.raises(pa.CrtInvalidParameter):
            dbg.free(r)
    assert record[0].message.kind == pa.PA_CRT_REPORT_ALIGNED
    dbg._aligned_free(r)
    assert dbg._CrtCheckMemory()


def test_fact93_check_memory_finds_a_damaged_no_mans_land(dbg):
    a = dbg.malloc(32)
    assert dbg._CrtCheckMemory()
    dbg.write(a + 32, b"\0\0")  # heap_guard=False: anything writable
    with pytest.warns(pa.CrtReport) as record:
        assert dbg._CrtCheckMemory() is False
    messages = [str(w.message) for w in record]
    assert any("after Normal block (#1)" in m for m in messages)
    assert any("Normal located at" in m and "is 32 bytes long" in m for m in messages)
    assert all(w.message.type == pa._CRT_WARN for w in record)
    dbg.write(a + 32, b"\xfd\xfd")
    assert dbg._CrtCheckMemory()
    dbg._CrtSetDbgFlag(0)
    dbg.write(a - 2, b"\0")
    assert dbg._CrtCheckMemory()  # _CRTDBG_ALLOC_MEM_DF off: no check
    dbg.write(a - 2, b"\xfd")
    dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF)
    dbg.free(a)


def test_fact93_check_memory_finds_writes_after_free(dbg):
    dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_DELAY_FREE_MEM_DF)
    a = dbg.malloc(8)
    dbg.free(a)
    assert dbg._CrtCheckMemory()
    dbg.write(a + 3, b"x")
    with pytest.warns(pa.CrtReport) as record:
        assert not dbg._CrtCheckMemory()
    assert "HEAP CORRUPTION DETECTED: on top of Free block" in str(record[0].message)


def test_periodic_check_reports_at_the_allocation(dbg):
    dbg._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_CHECK_ALWAYS_DF)
    a = dbg.malloc(8)
    dbg.write(a + 8, b"\0")
    with pytest.warns(pa.CrtReport) as record:
        b = dbg.malloc(8)  # the check before it fails: reported, the allocation made
    assert "Expression: _CrtCheckMemory()" in str(record[-1].message)
    assert record[-1].message.type == pa._CRT_ASSERT
    dbg.write(a + 8, b"\xfd")
    dbg.free(a)
    dbg.free(b)


def test_fact94_leaks_as_data_and_as_msvc_prints_them(dbg, capsys):
    assert dbg._CrtDumpMemoryLeaks() == []
    assert capsys.readouterr().err == ""
    a = dbg.malloc(20)  # fact94-malloc
    dbg.write(a, b"Hello, leak!")
    b = dbg.calloc(2, 3)  # fact94-calloc
    leaks = dbg._CrtDumpMemoryLeaks()
    assert [x.address for x in leaks] == [b, a]  # newest first
    first = leaks[1]
    assert (first.size, first.request, first.block_type, first.allocator) == \
        (20, 1, pa._NORMAL_BLOCK, "malloc")
    assert first.file == THIS and first.line == line_of("# fact94-malloc")
    assert leaks[0].line == line_of("# fact94-calloc")
    assert isinstance(first, pa.CrtBlock) and first == tuple(first)
    err = capsys.readouterr().err
    assert err.startswith("Detected memory leaks!\nDumping objects ->\n")
    assert err.endswith("Object dump complete.\n")
    assert re.search(rf"{re.escape(THIS)}\({first.line}\) : \{{1\}} normal block at "
                     rf"0x{a:016X}, 20 bytes long.\n Data: <Hello, leak!    > 48 65 6C", err)
    dbg.free(a)
    dbg.free(b)
    assert dbg._CrtDumpMemoryLeaks() == []


def test_fact94_msize_valid_pointer_and_limits(dbg):
    a = dbg.malloc(13)
    assert dbg._msize(a) == 13
    assert dbg.HeapSize(heap(dbg), 0, a - HDR) == HDR + 13 + NML
    assert dbg._CrtIsValidHeapPointer(a)
    assert not dbg._CrtIsValidHeapPointer(a + 8)
    with pytest.raises(pa.CrtMemoryError):
        dbg.malloc(pa._HEAP_MAXREQ - NML - HDR + 1)
    with pytest.warns(pa.CrtReport):
        with pytest.raises(pa.CrtInvalidParameter):
            dbg._msize(a + 8)
    dbg.free(a)


def test_leak_check_at_close_prints_the_dump(capsys):
    p = pa.Process(crt_debug=True)
    p._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF)
    p.malloc(3)
    p.close()
    err = capsys.readouterr().err
    assert "Detected memory leaks!" in err and "3 bytes long" in err


def test_python_code_run_by_the_close_report_finds_the_process_closed(monkeypatch):
    # Found by fuzzing: the exit leak dump went to sys.stderr while the Process still
    # pointed at its destroyed process, and a call made from stderr's write() crashed.
    p = pa.Process(crt_debug=True)
    p._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF)
    p.malloc(1)
    seen = []

    class Stderr:
        def write(self, s):
            try:
                p.malloc(1)
            except ValueError as e:
                seen.append(str(e))
            return len(s)

    monkeypatch.setattr(sys, "stderr", Stderr())
    p.close()
    monkeypatch.undo()
    assert seen and all("closed" in s for s in seen)


# A debug header is user data to the heap, so Process.write reaches it even with heap_guard on.
# Found by fuzzing: a file_name or next overwritten with garbage crashed the leak dump (and the
# one at close), a next pointing at its own header made the dump loop forever. Every walk of
# the list now stops at the first bad header and reports it as _CrtCheckMemory does.

DAMAGE = {  # offset into the header of the older block: bytes written there
    "file_name": (16, lambda a: b"A" * 8),
    "next": (0, lambda a: struct.pack("<Q", 0x4141414141414141)),
    "next-to-itself": (0, lambda a: struct.pack("<Q", a - HDR)),
}


@pytest.mark.parametrize("field", DAMAGE)
def test_damaged_header_stops_the_leak_dump_and_is_reported(field, capsys):
    p = pa.Process(crt_debug=True)  # heap_guard on
    a = p.malloc(8)  # walked last
    b = p.malloc(9)  # walked first
    offset, data = DAMAGE[field]
    saved = p.read(a - HDR + offset, 8)
    p.write(a - HDR + offset, data(a))
    bad = f"Bad memory block found at 0x{a - HDR:016X}."
    with pytest.warns(pa.CrtReport) as record:
        leaks = p._CrtDumpMemoryLeaks()
    assert [x.address for x in leaks] == [b]  # the blocks before the bad header
    assert [str(w.message) for w in record] == [bad]  # reported once
    assert record[0].message.kind == pa.PA_CRT_REPORT_CORRUPTION
    assert record[0].message.type == pa._CRT_WARN
    err = capsys.readouterr().err
    assert f"normal block at 0x{b:016X}, 9 bytes long." in err
    assert f"0x{a:016X}" not in err and err.endswith("Object dump complete.\n")
    with pytest.warns(pa.CrtReport, match=re.escape(bad)):
        assert p._CrtCheckMemory() is False
    with pytest.warns(pa.CrtReport, match="damaged"):
        p.free(a)  # not trusted, not freed
    p.write(a - HDR + offset, saved)
    assert p._CrtCheckMemory()
    assert [x.address for x in p._CrtDumpMemoryLeaks()] == [b, a]
    p.free(a)
    p.free(b)
    p.close()


@pytest.mark.parametrize("field", DAMAGE)
def test_damaged_header_stops_the_leak_dump_at_close(field, capsys):
    p = pa.Process(crt_debug=True)
    p._CrtSetDbgFlag(pa._CRTDBG_ALLOC_MEM_DF | pa._CRTDBG_LEAK_CHECK_DF)
    a = p.malloc(8)
    b = p.malloc(9)
    offset, data = DAMAGE[field]
    p.write(a - HDR + offset, data(a))
    p.close()
    err = capsys.readouterr().err
    assert "Detected memory leaks!" in err and f"0x{b:016X}, 9 bytes long." in err
    assert f"Bad memory block found at 0x{a - HDR:016X}." in err


@pytest.mark.parametrize("undo", ["free", "realloc", "heapfree"])
def test_a_listed_block_freed_behind_the_lists_back_is_not_written_through(undo):
    # Found by fuzzing: a block whose type was rewritten to _IGNORE_BLOCK (its header is in
    # the block: heap_guard allows it) was freed or moved without being unlinked, as was one
    # given to HeapFree directly; the next malloc wrote through the stale list head (a large
    # block's pages are gone after the free: SIGSEGV). Whether a block is listed now follows
    # the list, and a head that is no longer a sound header is reported, not written.
    p = pa.Process(crt_debug=True)
    a = p.malloc(1 << 25)
    if undo == "heapfree":
        assert p.HeapFree(p.GetProcessHeap(), 0, a - HDR)
        a = None
    else:
        p.write(a - 20, struct.pack("<i", pa._IGNORE_BLOCK))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pa.CrtReport)
            a = p.free(a) if undo == "free" else p.realloc(a, 1 << 26)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pa.CrtReport)
        b = p.malloc(10)
    assert p._msize(b) == 10 and p._CrtCheckMemory()
    p.free(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pa.CrtReport)
        p.free(a)  # the moved block is listed: freed with an assertion on its block type
    p.close()


def test_only_file_names_the_crt_stored_are_read(dbg):
    """A header's file name is printed only if the CRT stored that pointer in a live block."""
    a = dbg.malloc(8)  # site-a
    b = dbg.malloc(8)
    dbg.free(b)  # its file name is the same interned string: still stored by a
    assert dbg._CrtCheckMemory()
    name = header(dbg, a)["file"]
    dbg.write(a - HDR + 16, struct.pack("<Q", name + 1))  # inside the name: a string, not one
    with pytest.warns(pa.CrtReport, match="Bad memory block"):
        assert dbg._CrtDumpMemoryLeaks() == []
    dbg.write(a - HDR + 16, struct.pack("<Q", name))
    (leak,) = dbg._CrtDumpMemoryLeaks()
    assert leak.file == THIS and leak.line == line_of("# site-a")
    dbg.free(a)


def test_call_sites_of_the_whole_family(dbg):
    sites = {
        dbg.realloc(None, 4): "# site-realloc",
        dbg._aligned_malloc(8, 16): None,  # aligned debug blocks: the base block is listed
        dbg._recalloc(None, 1, 2): "# site-recalloc",
    }
    leaks = {x.line for x in dbg._CrtDumpMemoryLeaks()}
    for marker in sites.values():
        if marker:
            assert line_of(marker) in leaks


def test_break_alloc_callback(dbg):
    hits = []
    assert dbg._CrtSetBreakAlloc(3, lambda request, address: hits.append((request, address))) \
        == -1
    a = dbg.malloc(1)
    b = dbg.malloc(1)
    assert hits == []
    c = dbg.malloc(1)  # request 3
    assert hits == [(3, c)]

    def stop(request, address):
        raise RuntimeError(f"break at {request}")

    dbg._CrtSetBreakAlloc(5, stop)
    dbg.malloc(1)
    with pytest.raises(RuntimeError, match="break at 5"):
        dbg.malloc(1)
    assert [x.request for x in dbg._CrtDumpMemoryLeaks()][:1] == [5]  # it was allocated
    assert dbg._CrtSetBreakAlloc(7) == 5  # no callback: a warning
    with pytest.warns(pa.CrtReport, match=r"allocation request \{7\}") as record:
        dbg.malloc(1)
        dbg.malloc(1)
    assert record[0].message.kind == pa.PA_CRT_REPORT_BREAK
    for x in (a, b, c):
        dbg.free(x)


def test_release_crt_ignores_debug_calls(rel):
    assert rel._CrtCheckMemory() is True
    assert rel._CrtDumpMemoryLeaks() == []
    a = rel.malloc(8)
    assert rel._CrtDumpMemoryLeaks() == []  # nothing tracked
    assert rel._CrtReportBlockType(a) == -1
    rel.free(a)


def test_reports_carry_their_fields_through_pickle():
    r = pa.CrtReport("message", pa._CRT_ERROR, pa.PA_CRT_REPORT_MISMATCH, 0x1000, 7)
    s = pickle.loads(pickle.dumps(r))
    assert (str(s), s.type, s.kind, s.address, s.request) == \
        ("message", pa._CRT_ERROR, pa.PA_CRT_REPORT_MISMATCH, 0x1000, 7)
    assert issubclass(pa.CrtReport, Warning)
