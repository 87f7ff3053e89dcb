"""The pyalloc command: ``python -m pyalloc demo`` (or ``pyalloc demo``)."""
from __future__ import annotations

import argparse
import sys

import pyalloc as pa
from .textmap import format_map, format_size


def demo() -> int:
    """A few allocations in a fresh process, and the map they make."""
    with pa.Process(address_space=1 << 32) as p:
        print(p)
        print()
        a = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        print(f"VirtualAlloc(NULL, 8, MEM_COMMIT|MEM_RESERVE, PAGE_READWRITE) -> {a:#x}")
        print(f"   {p.VirtualQuery(a)}")
        print(f"   {p.VirtualQuery(a + 0x1000)}")
        print("   8 bytes cost one committed 4 KiB page and a whole 64 KiB slot: "
              "the other 60 KiB are free but unusable.")
        b = p.VirtualAlloc(None, 1 << 20, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
        p.VirtualAlloc(b, 3 * 4096, pa.MEM_COMMIT, pa.PAGE_READWRITE)
        p.VirtualAlloc(b + 3 * 4096, 4096, pa.MEM_COMMIT, pa.PAGE_READWRITE | pa.PAGE_GUARD)
        print(f"reserved 1 MiB at {b:#x}, committed 12 KiB of it and a guard page after them")
        try:
            p.read(b + 3 * 4096, 1)
        except pa.GuardPageViolation as e:
            print(f"   touching the guard page raised {e!r}; the guard is now gone")
        c = p.VirtualAlloc(None, 64 << 10, pa.MEM_COMMIT | pa.MEM_RESERVE | pa.MEM_WRITE_WATCH,
                           pa.PAGE_READWRITE)
        p.write(c + 0x2000, b"hello")
        written, gran = p.GetWriteWatch(0, c, 64 << 10)
        print(f"write watch on {c:#x}: wrote 5 bytes at +0x2000; GetWriteWatch -> "
              f"{[hex(x) for x in written]}, granularity {format_size(gran)}")
        try:
            p.VirtualFree(a, 0, pa.MEM_RELEASE)
            p.VirtualFree(a, 0, pa.MEM_RELEASE)
        except pa.WinError as e:
            print(f"releasing twice raised WinError: {e}")
        a = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        print()
        print(format_map(p))
    return 0


RUN_USAGE = ("pyalloc run [--stats] [--debug-crt] [--leaks] [--heap-checks] [--page-heap] "
             "-- CMD ARGS...")


def run(command: list[str], stats: bool, debug_crt: bool = False, leaks: bool = False,
        heap_checks: bool = False, page_heap: bool = False) -> int:
    """Executes command with its malloc family on pyalloc's stack (the process is replaced, so
    its output and exit status are the program's own). debug_crt: on the debug CRT
    (PYALLOC_CRT_DEBUG=1); leaks: also _CRTDBG_LEAK_CHECK_DF in its flags
    (PYALLOC_CRT_DBG_FLAG), so the leaks are dumped when the program ends. heap_checks: the
    heap's tail and free checking (gflags +htc +hfc: a write past a block's end or into a
    freed block ends the program at the next free or allocation there); page_heap: full page
    heap (gflags /p /enable: such a write faults at once)."""
    import os

    if not command:
        print(f"pyalloc run: no command given ({RUN_USAGE})", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [pa.preload_path(), env.get("LD_PRELOAD")]))
    if stats:
        env["PYALLOC_STATS"] = "1"
    if debug_crt or leaks:
        env["PYALLOC_CRT_DEBUG"] = "1"
    if heap_checks:
        env["PYALLOC_HEAP_TAIL_CHECK"] = env["PYALLOC_HEAP_FREE_CHECK"] = "1"
    if page_heap:
        env["PYALLOC_HEAP_PAGE_HEAP"] = "1"
    if leaks:
        try:
            flag = int(env.get("PYALLOC_CRT_DBG_FLAG") or str(pa._CRTDBG_ALLOC_MEM_DF), 0)
        except ValueError:
            print("pyalloc run: PYALLOC_CRT_DBG_FLAG is not a number", file=sys.stderr)
            return 2
        env["PYALLOC_CRT_DBG_FLAG"] = hex(flag | pa._CRTDBG_LEAK_CHECK_DF)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        print(f"pyalloc run: {command[0]}: {e.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyalloc", description=pa.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="print an address-space map of a few allocations")
    p_run = sub.add_parser("run", help="run a program with its malloc on pyalloc's stack",
                           usage=RUN_USAGE,
                           epilog="A Python program run so sees its own process, read-only, "
                                  "through pyalloc.host().")
    p_run.add_argument("--stats", action="store_true",
                       help="at exit, print what each layer did (to stderr)")
    p_run.add_argument("--debug-crt", action="store_true",
                       help="on the debug CRT: guards, fills, reports of damage and bad frees")
    p_run.add_argument("--leaks", action="store_true",
                       help="the debug CRT with _CRTDBG_LEAK_CHECK_DF: the leaks are dumped "
                            "(to stderr) when the program ends")
    p_run.add_argument("--heap-checks", action="store_true",
                       help="tail and free checking (gflags +htc +hfc): writes past a block or "
                            "into a freed one end the program when the heap next looks there")
    p_run.add_argument("--page-heap", action="store_true",
                       help="full page heap (gflags /p): each block ends at an inaccessible "
                            "page, so a write past it faults at once")
    p_run.add_argument("cmd", nargs=argparse.REMAINDER, help="the program and its arguments")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return run(cmd, args.stats, args.debug_crt, args.leaks, args.heap_checks, args.page_heap)
    return 2


if __name__ == "__main__":
    sys.exit(main())
