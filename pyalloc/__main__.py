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


def run(command: list[str], stats: bool) -> int:
    """Executes command with its malloc family on pyalloc's stack (the process is replaced, so
    its output and exit status are the program's own)."""
    import os

    if not command:
        print("pyalloc run: no command given (pyalloc run [--stats] -- CMD ARGS...)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [pa.preload_path(), env.get("LD_PRELOAD")]))
    if stats:
        env["PYALLOC_STATS"] = "1"
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
                           usage="pyalloc run [--stats] -- CMD ARGS...")
    p_run.add_argument("--stats", action="store_true",
                       help="at exit, print what each layer did (to stderr)")
    p_run.add_argument("cmd", nargs=argparse.REMAINDER, help="the program and its arguments")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return run(cmd, args.stats)
    return 2


if __name__ == "__main__":
    sys.exit(main())
