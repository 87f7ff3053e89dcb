"""Layer 5 through Python: operator new/delete (heap.md 1.14-1.15) and new/delete/new_array/
delete_array, which build ctypes objects in memory that operator new returned.

A type "has a destructor" when it defines __pyalloc_destroy__; then new_array puts MSVC's array
cookie (the count, max(8, alignof(T)) bytes) before the elements (fact 86), read here with
Process.read. delete() runs the destructor at once and gives the memory back when no ctypes
object over it is left (pyalloc's one departure from C++: a deleted object never sees reused
memory), so tests that look at the heap afterwards drop the object first (`del obj`).

Facts without a test here, and why: 85's align_val_t overloads for over-aligned *types* need a
ctypes type with alignment above 16, which Python 3.11's ctypes cannot express (no _align_);
operator_new's align argument tests the overload itself. 87's sized deletes take a size MSVC
does not use: operator_delete has no size argument.
"""
from __future__ import annotations

import ctypes
import gc
import struct

import pytest

import pyalloc as pa

HDR = 48
THIS = __file__


def line_of(marker: str) -> int:
    with open(THIS) as f:
        for n, text in enumerate(f, 1):
            if marker in text and "line_of(" not in text:
                return n
    raise AssertionError(marker)


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("z", ctypes.c_double)]


log: list = []


class Tracked(ctypes.Structure):
    """A type with a constructor and a destructor that log what they do."""

    _fields_ = [("id", ctypes.c_int32), ("payload", ctypes.c_uint32)]
    fail_at: int | None = None

    def __init__(self, ident: int = -1):
        super().__init__()
        if Tracked.fail_at is not None and len([e for e in log if e[0] == "ctor"]) == \
                Tracked.fail_at:
            raise RuntimeError("constructor failed")
        self.id = ident if ident >= 0 else len(log)
        log.append(("ctor", ctypes.addressof(self)))

    def __pyalloc_destroy__(self):
        log.append(("dtor", ctypes.addressof(self)))


@pytest.fixture(autouse=True)
def clean_log():
    log.clear()
    Tracked.fail_at = None
    yield
    log.clear()


@pytest.fixture(params=[False, True], ids=["release", "debug"])
def proc(request):
    p = pa.Process(crt_debug=request.param)
    yield p
    gc.collect()
    p.close()


@pytest.fixture
def rel():
    p = pa.Process(crt_debug=False)
    yield p
    gc.collect()
    p.close()


@pytest.fixture
def dbg():
    p = pa.Process(crt_debug=True)
    yield p
    gc.collect()
    p.close()


@pytest.fixture
def tight():
    """An 8 MiB commit limit with 5 MiB of it held in one block."""
    p = pa.Process(crt_debug=False, commit_limit=8 << 20)
    p.reserve = p.malloc(5 << 20)
    yield p
    p.set_new_handler(None)
    p.close()


def heap(p):
    return p.GetProcessHeap()


# ---- 1.14 / 1.15 operator new and operator delete ----


def test_fact84_operator_new_is_malloc(rel):
    a = rel.operator_new(40)
    assert rel._msize(a) == 40 == rel.HeapSize(heap(rel), 0, a)
    rel.operator_delete(a)
    assert not rel.HeapValidate(heap(rel), 0, a)
    b = rel.operator_new(40, array=True)
    rel.operator_delete(b, array=True)
    rel.operator_delete(None)  # delete of NULL does nothing
    assert rel.operator_new(0)  # a unique non-NULL pointer


def test_fact84_aligned_overload(rel):
    a = rel.operator_new(100, 64)
    assert a % 64 == 0 and rel._aligned_msize(a, 64, 0) == 100
    rel.operator_delete(a, 64)
    with pytest.raises(ValueError):
        rel.operator_new(8, 24)
    with pytest.raises(TypeError):
        rel.operator_new(8, 16, True)  # array and nothrow are keywords


def test_fact84_handler_loop(tight):
    calls = []

    def handler(size):
        calls.append(size)
        if tight.reserve:
            tight.free(tight.reserve)
            tight.reserve = None
            return True
        return False

    assert tight.set_new_handler(handler) is None
    a = tight.operator_new(5 << 20)  # fails once, the handler makes room, the retry succeeds
    assert calls == [5 << 20] and tight._msize(a) == 5 << 20
    with pytest.raises(pa.BadAlloc) as info:
        tight.operator_new(5 << 20)  # the handler has nothing left: falsy, bad_alloc
    assert isinstance(info.value, MemoryError) and info.value.size == 5 << 20
    assert str(info.value) == f"bad allocation ({5 << 20} bytes)"
    assert calls == [5 << 20] * 2
    assert tight._query_new_mode() == 0  # operator new asks the handler in any new mode
    assert tight.set_new_handler(None) is handler


def test_fact84_handler_that_raises(tight):
    def handler(size):
        raise OSError("out of reserves")

    tight.set_new_handler(handler)
    with pytest.raises(pa.BadAlloc) as info:
        tight.operator_new(5 << 20)
    assert isinstance(info.value.__cause__, OSError)
    # nothrow: vcruntime catches whatever the throwing new threw
    assert tight.operator_new(5 << 20, nothrow=True) is None


def test_fact84_nothrow_and_bad_array_new_length(rel):
    assert rel.operator_new(1 << 50, nothrow=True) is None
    with pytest.raises(pa.BadAlloc):
        rel.operator_new(1 << 50)
    with pytest.raises(pa.BadArrayNewLength) as info:
        rel.operator_new(2**64 - 1, array=True)
    assert isinstance(info.value, pa.BadAlloc) and str(info.value).startswith("bad array new")


def test_fact85_default_new_alignment():
    assert pa.PA_DEFAULT_NEW_ALIGNMENT == 16


def test_mismatches_are_reported_by_the_debug_crt(dbg):
    a = dbg.operator_new(16)
    with pytest.warns(pa.CrtReport) as record:
        dbg.free(a)
    report = record[0].message
    assert report.kind == pa.PA_CRT_REPORT_MISMATCH and report.type == pa._CRT_ERROR
    assert "allocated by operator new and released by free" in str(report)
    assert f"Memory allocated at {THIS}" in str(report)
    b = dbg.operator_new(16, array=True)
    with pytest.warns(pa.CrtReport, match="operator new\\[\\] and released by operator delete\\."):
        dbg.operator_delete(b)
    c = dbg.malloc(16)
    with pytest.warns(pa.CrtReport, match="allocated by malloc and released by operator delete"):
        dbg.operator_delete(c)
    d = dbg.operator_new(16)
    with pytest.warns(pa.CrtReport, match="released by realloc"):
        d = dbg.realloc(d, 32)
    dbg.operator_delete(d)  # the block moved, still a block of operator new
    assert dbg._CrtDumpMemoryLeaks() == []  # reported, and released all the same
    assert dbg._CrtCheckMemory()


def test_release_crt_does_not_check_mismatches(rel):
    rel.free(rel.operator_new(16))  # undefined in C++; MSVC's release CRT frees it
    rel.operator_delete(rel.malloc(16), array=True)
    assert rel.HeapValidate(heap(rel))


def test_operator_new_call_site_and_leak(dbg):
    a = dbg.operator_new(24)  # new-site
    b = dbg.operator_new(8, array=True)
    leaks = dbg._CrtDumpMemoryLeaks()
    assert [(x.address, x.allocator) for x in leaks] == \
        [(b, "operator new[]"), (a, "operator new")]
    assert leaks[1].line == line_of("# new-site") and leaks[1].file == THIS
    dbg.operator_delete(a)
    dbg.operator_delete(b, array=True)


# ---- new and delete of ctypes objects ----


def test_new_constructs_in_the_process_heap(proc):
    p = proc
    pt = p.new(Point, 1, 2, z=3.5)
    assert (pt.x, pt.y, pt.z) == (1, 2, 3.5)
    a = ctypes.addressof(pt)
    size = ctypes.sizeof(Point)
    if p.crt_debug:
        assert p._msize(a) == size and p.HeapSize(heap(p), 0, a - HDR) == HDR + size + 4
    else:
        assert p.HeapSize(heap(p), 0, a) == size  # the object is the heap block
    assert p.read(a, 8) == struct.pack("<ii", 1, 2)
    pt.x = 42
    assert p.read(a, 4) == struct.pack("<i", 42)  # the same memory
    p.delete(pt)
    del pt
    assert not p._CrtDumpMemoryLeaks()


def test_new_without_arguments_leaves_the_fill(dbg, rel):
    pt = dbg.new(Point)  # C++ `new Point`: no constructor, the debug fill shows
    assert dbg.read(ctypes.addressof(pt), ctypes.sizeof(Point)) == b"\xcd" * 16
    assert pt.x == -842150451  # 0xCDCDCDCD
    n = rel.new(ctypes.c_int, 7)
    assert n.value == 7
    dbg.delete(pt)
    rel.delete(n)


def test_new_records_the_python_call_site(dbg):
    pt = dbg.new(Point)  # new-object-site
    (leak,) = dbg._CrtDumpMemoryLeaks()
    assert (leak.address, leak.size, leak.allocator) == \
        (ctypes.addressof(pt), ctypes.sizeof(Point), "operator new")
    assert leak.file == THIS and leak.line == line_of("# new-object-site")
    dbg.delete(pt)


def test_delete_runs_the_destructor_then_frees(proc):
    p = proc
    t = p.new(Tracked, 5)
    a = ctypes.addressof(t)
    assert log == [("ctor", a)] and t.id == 5
    p.delete(t)
    assert log == [("ctor", a), ("dtor", a)]
    # the memory goes back when the last ctypes object over it does
    blocks_before = p.GetProcessHeap().stats()["busy_blocks"]
    del t
    assert p.GetProcessHeap().stats()["busy_blocks"] == blocks_before - 1
    assert p._CrtDumpMemoryLeaks() == []


def test_a_deleted_object_cannot_corrupt_the_heap(proc):
    p = proc
    keep = p.new(Point, 1, 2)
    p.delete(keep)
    keep.x = 99  # use after delete: its own bytes, not reused memory
    other = p.malloc(ctypes.sizeof(Point))
    assert other != ctypes.addressof(keep)
    assert keep.x == 99
    assert p.HeapValidate(heap(p)) and p._CrtCheckMemory()
    del keep
    p.free(other)
    assert p.HeapValidate(heap(p))


def test_double_delete_and_foreign_objects_raise(proc, new_process):
    p = proc
    t = p.new(Tracked)
    p.delete(t)
    with pytest.raises(ValueError, match="already deleted"):
        p.delete(t)
    assert [e[0] for e in log] == ["ctor", "dtor"]  # the destructor ran once
    with pytest.raises(TypeError):
        p.delete(ctypes.c_int(5))  # not made by new()
    with pytest.raises(TypeError):
        p.delete(12345)
    other = new_process()
    o = other.new(Point)
    with pytest.raises(ValueError, match="another process"):
        p.delete(o)
    other.delete(o)
    del o
    outer = p.new(ctypes.c_int * 4)
    with pytest.raises(TypeError):
        p.delete(ctypes.c_int.from_buffer(outer))  # a part of it
    p.delete(outer)


def test_delete_and_delete_array_do_not_mix(proc):
    p = proc
    arr = p.new_array(Tracked, 2)
    one = p.new(Tracked)
    with pytest.raises(TypeError, match="use delete_array"):
        p.delete(arr)
    with pytest.raises(TypeError, match="use delete"):
        p.delete_array(one)
    p.delete_array(arr)
    p.delete(one)


def test_new_of_something_that_is_no_ctypes_type(rel):
    for bad in (int, 3, "c_int"):
        with pytest.raises(TypeError):
            rel.new(bad)
        with pytest.raises(TypeError):
            rel.new_array(bad, 2)
    with pytest.raises(TypeError):
        rel.new()


def test_failed_constructor_frees_the_memory(dbg):
    with pytest.raises(TypeError):
        dbg.new(Point, 1, 2, 3, 4)  # too many initializers
    Tracked.fail_at = 0
    with pytest.raises(RuntimeError, match="constructor failed"):
        dbg.new(Tracked)
    assert log == []  # no destructor for what was never constructed
    gc.collect()
    assert dbg._CrtDumpMemoryLeaks() == []


def test_destructor_that_raises_still_frees(dbg):
    class Bad(ctypes.Structure):
        _fields_ = [("v", ctypes.c_int)]

        def __pyalloc_destroy__(self):
            raise ValueError("dtor")

    b = dbg.new(Bad)
    with pytest.raises(ValueError, match="dtor"):
        dbg.delete(b)
    with pytest.raises(ValueError, match="already deleted"):
        dbg.delete(b)
    del b
    assert dbg._CrtDumpMemoryLeaks() == []


def test_live_objects_pin_their_memory(rel):
    pt = rel.new(Point)
    a = ctypes.addressof(pt)
    with pytest.raises(BufferError):
        rel.free(a)
    with pytest.raises(BufferError):
        rel.HeapFree(heap(rel), 0, a)
    with pytest.raises(BufferError):
        rel.close()
    assert not rel.closed
    rel.delete(pt)
    del pt
    rel.close()


def test_python_code_run_in_new_cannot_close_the_process_under_it(new_process):
    # The block is pinned before the break callback runs: close() is refused, and new()
    # raises what the callback raised; the block stays allocated, as the break leaves it.
    p = new_process(crt_debug=True)
    p._CrtSetBreakAlloc(1, lambda request, address: p.close())
    with pytest.raises(BufferError):
        p.new(Point)
    assert not p.closed
    (leak,) = p._CrtDumpMemoryLeaks()
    assert leak.request == 1 and leak.allocator == "operator new"


@pytest.mark.parametrize("make", [lambda p: p.new(ctypes.c_char * 4000),
                                  lambda p: p.new_array(ctypes.c_char, 4000)],
                         ids=["new", "new_array"])
def test_python_code_run_in_new_cannot_free_the_block_under_it(new_process, make):
    # Found by fuzzing: a break callback that freed the block let new() build its object on
    # memory the next malloc then reused.
    p = new_process(crt_debug=True)
    p._CrtSetBreakAlloc(1, lambda request, address: p.free(address))
    with pytest.raises(BufferError):
        make(p)
    (leak,) = p._CrtDumpMemoryLeaks()
    assert leak.request == 1 and p._CrtCheckMemory()


def test_objects_whose_constructor_keeps_a_python_value_can_be_deleted(dbg):
    # Found by fuzzing: c_char_p's constructor replaced the ctypes object's _objects (where
    # the block's memoryview was), so delete() refused the object and its block leaked.
    s = dbg.new(ctypes.c_char_p, b"text")
    assert s.value == b"text" and dbg._msize(ctypes.addressof(s)) == 8
    dbg.delete(s)
    arr = dbg.new_array(ctypes.c_char_p, 3)
    arr[1] = b"kept"
    dbg.delete_array(arr)
    del s, arr  # the memory goes back once the objects are gone
    gc.collect()
    assert dbg._CrtDumpMemoryLeaks() == []


def test_dropped_object_leaks_like_cpp(dbg):
    pt = dbg.new(Point)  # dropped-site
    del pt
    gc.collect()
    (leak,) = dbg._CrtDumpMemoryLeaks()
    assert leak.line == line_of("# dropped-site") and leak.allocator == "operator new"


# ---- new_array / delete_array: fact 86 ----


def test_fact86_cookie_only_with_a_destructor(proc):
    p = proc
    plain = p.new_array(ctypes.c_int, 5)
    a = ctypes.addressof(plain)
    assert len(plain) == 5 and ctypes.sizeof(plain) == 20
    if not p.crt_debug:
        assert p._msize(a) == 20  # operator new[] got exactly sizeof(T) * n: no cookie
    else:
        assert p.read(a, 20) == b"\xcd" * 20 and p._msize(a) == 20
    tracked = p.new_array(Tracked, 3)
    t = ctypes.addressof(tracked)
    (count,) = struct.unpack("<Q", p.read(t - 8, 8))
    assert count == 3  # the cookie: the count just before element 0
    assert p._msize(t - 8) == 3 * ctypes.sizeof(Tracked) + 8
    p.delete_array(plain)
    p.delete_array(tracked)


def test_fact86_constructors_in_order_destructors_in_reverse(proc):
    p = proc
    arr = p.new_array(Tracked, 4)
    base, size = ctypes.addressof(arr), ctypes.sizeof(Tracked)
    addresses = [base + i * size for i in range(4)]
    assert log == [("ctor", x) for x in addresses]
    assert [arr[i].id for i in range(4)] == [0, 1, 2, 3]
    log.clear()
    p.delete_array(arr)
    assert log == [("dtor", x) for x in reversed(addresses)]
    del arr
    assert p._CrtDumpMemoryLeaks() == []


def test_fact86_delete_array_reads_the_count_from_the_cookie(rel):
    arr = rel.new_array(Tracked, 4)
    base = ctypes.addressof(arr)
    rel.write(base - 8, struct.pack("<Q", 2))  # the cookie now says 2
    log.clear()
    rel.delete_array(arr)
    assert len(log) == 2  # as delete[] would: two destructors, the last two elements
    assert log[0] == ("dtor", base + ctypes.sizeof(Tracked))
    big = rel.new_array(Tracked, 2)
    rel.write(ctypes.addressof(big) - 8, struct.pack("<Q", 1000))
    log.clear()
    with pytest.raises(ValueError, match="cookie"):
        rel.delete_array(big)  # a count beyond the array: refused, nothing run
    assert log == []
    rel.write(ctypes.addressof(big) - 8, struct.pack("<Q", 2))
    rel.delete_array(big)


def test_fact86_failed_constructor_unwinds(dbg):
    Tracked.fail_at = 2
    with pytest.raises(RuntimeError, match="constructor failed"):
        dbg.new_array(Tracked, 5)
    built = [a for kind, a in log if kind == "ctor"]
    assert len(built) == 2
    assert [a for kind, a in log if kind == "dtor"] == built[::-1]  # reverse order
    gc.collect()
    assert dbg._CrtDumpMemoryLeaks() == []


def test_fact86_overflow_is_bad_array_new_length(rel):
    with pytest.raises(pa.BadArrayNewLength):
        rel.new_array(ctypes.c_int64, 2**62)
    with pytest.raises(pa.BadArrayNewLength):
        rel.new_array(Tracked, 2**61 - 1)  # with the cookie
    with pytest.raises(pa.BadAlloc):
        rel.new_array(ctypes.c_char, 1 << 50)


def test_empty_array(proc):
    p = proc
    for T in (ctypes.c_int, Tracked):
        arr = p.new_array(T, 0)
        assert len(arr) == 0
        p.delete_array(arr)
        del arr
    assert log == [] and p._CrtDumpMemoryLeaks() == []


def test_new_array_records_the_call_site(dbg):
    arr = dbg.new_array(Tracked, 2)  # array-site
    (leak,) = dbg._CrtDumpMemoryLeaks()
    assert leak.address == ctypes.addressof(arr) - 8  # the block starts at the cookie
    assert leak.size == 2 * ctypes.sizeof(Tracked) + 8 and leak.allocator == "operator new[]"
    assert leak.line == line_of("# array-site")
    dbg.delete_array(arr)


def test_module_level_new_and_delete():
    pt = pa.new(Point, 3, 4)
    assert pa._msize(ctypes.addressof(pt)) == ctypes.sizeof(Point)  # the current process's CRT
    assert (pt.x, pt.y) == (3, 4)
    pa.delete(pt)
    arr = pa.new_array(ctypes.c_double, 3)
    arr[2] = 1.5
    pa.delete_array(arr)
