#!/usr/bin/env python3
"""Unmodified programs on four allocators: glibc, mimalloc, jemalloc and pyalloc's preload library.

    python3 bench/bench_preload.py [--reps N] [--only W1,W2] [--allocators A,B]
                                   [--pyalloc-lib PATH] [--scale S] [--timeout SEC]

Every workload runs under each allocator in the same session, interleaved (glibc mimalloc
jemalloc pyalloc, glibc mimalloc ... with the starting allocator rotated each repetition), so
that the machine's drift spreads over all four. mimalloc, jemalloc and pyalloc are loaded with
LD_PRELOAD; glibc is the program as it is. Each run is one child of a small C launcher
(bench/preload_launch.c), which sets LD_PRELOAD for the child only, times it by the monotonic
clock around fork and wait4, and takes from wait4's rusage its CPU time and peak RSS
(ru_maxrss: for a program that forks, the largest of it and its waited-for children). The
launcher, not this script, is the parent because ru_maxrss also counts what the child had
before exec, and a forked copy of this Python process would hide any smaller program's peak.

Every run must exit 0 and print exactly what glibc printed (the workloads print checksums of
the data they wrote), or the table marks it WRONG / FAILED and the command to reproduce it is
printed; a broken allocator cannot look fast. The table gives glibc's absolute numbers and,
for the others, the median over repetitions of (allocator / glibc in the same repetition).

Workloads: bench/alloc_workloads.c (compiled here with gcc -O2): churn, mixed, prodcons,
pool (32 threads), realloc, trees; and real programs: python3 (json + re + sqlite3 over
~3 MB), python3 growth (bytearray and BytesIO buffers grown by appending, up to 16 MB),
sqlite3 (a script of inserts, two indexes, queries, update, delete), sort (a 7 MB generated
file) and gcc (compiling alloc_workloads.c with -O2 -g).

Needs: gcc, sqlite3, sort; apt-get install libmimalloc-dev libjemalloc-dev; the preload
library (python3 setup.py -q build_ext --inplace). A missing allocator or program is skipped.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
ALLOCATORS = ("glibc", "mimalloc", "jemalloc", "pyalloc")

PY_WORKLOAD = textwrap.dedent("""
    import decimal, hashlib, json, re, sqlite3
    rows = [{"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5),
             "price": str(decimal.Decimal(i) / 7)} for i in range(30000)]
    text = json.dumps(rows)
    back = json.loads(text)
    words = re.findall(r"item(\\d+)", text)
    db = sqlite3.connect(":memory:")
    db.execute("create table t (id integer, name text)")
    db.executemany("insert into t values (?, ?)", ((r["id"], r["name"]) for r in back))
    total = db.execute("select count(*), sum(id) from t").fetchone()
    print(len(text), len(words), total, hashlib.sha256(text.encode()).hexdigest())
""")

# Buffers grown by appending (bytearray +=, io.BytesIO): CPython reallocs them, so every step
# that outgrows the block moves it - by copying, or, for big blocks, by moving pages (glibc's
# mremap; pyalloc's pa_mm_move_pages).
PY_GROWTH = textwrap.dedent("""
    import hashlib, io
    h = hashlib.sha256()
    for rep in range(12):
        b = bytearray()
        chunk = bytes(range(256)) * (64 + rep)
        for i in range(800):
            b += chunk
        f = io.BytesIO()
        for i in range(4000):
            f.write(chunk[: 100 + i % 900])
        h.update(b[-4096:])
        h.update(f.getvalue()[-4096:])
        h.update(len(b).to_bytes(8, "little"))
    print(h.hexdigest())
""")

SQL_SCRIPT = textwrap.dedent("""
    create table t(a integer, b text, c real);
    with recursive n(i) as (select 1 union all select i + 1 from n where i < 100000)
    insert into t select i, printf('row %d %x', i, i * 7919 % 100003), i * 0.5 from n;
    create index tb on t(b);
    create index tc on t(c, a);
    select count(*), sum(a), max(b) from t where b like 'row 1%';
    select group_concat(a) from (select a from t order by b desc limit 5);
    select count(distinct substr(b, 5, 3)) from t;
    update t set b = b || '!' where a % 3 = 0;
    delete from t where a % 5 = 0;
    select count(*), sum(length(b)) from t;
""")


# ---- allocators ----

def dpkg_libs(packages: list[str], prefix: str) -> list[str]:
    """Shared objects named prefix* that the installed packages ship (dpkg -L)."""
    found = []
    for pkg in packages:
        try:
            out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout
        except OSError:
            return []
        found += [p for p in out.split() if os.path.basename(p).startswith(prefix) and ".so" in p]
    return sorted(set(found), key=len)


def find_so(packages: list[str], prefix: str, fallbacks: list[str]) -> str | None:
    for p in dpkg_libs(packages, prefix) + fallbacks:
        if os.path.exists(p):
            return os.path.realpath(p)
    return None


def preload_env(lib: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("PYALLOC_STATS", None)
    if lib:
        env["LD_PRELOAD"] = lib
    env.update(extra or {})
    return env


def probe(lib: str, extra: dict[str, str]) -> tuple[bool, str]:
    """Whether lib really gets loaded by LD_PRELOAD (ld.so only warns when it can't)."""
    r = subprocess.run(["cat", "/proc/self/maps"], env=preload_env(lib, extra),
                       capture_output=True, text=True)
    return os.path.basename(lib) in r.stdout, r.stderr.strip()


def snapshot(src: str, tmp: str, label: str) -> str:
    """A copy of src in tmp, so that a rebuild during the run cannot mix two versions."""
    d = os.path.join(tmp, label.replace(":", "-"))  # no ":" in an LD_PRELOAD path
    os.makedirs(d, exist_ok=True)
    snap = os.path.join(d, os.path.basename(src))
    shutil.copy2(src, snap)
    with open(snap, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    print(f"{label}: {src} (built {time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(src)))},"
          f" sha256 {digest})")
    return snap


def allocators(tmp: str, pyalloc_lib: str | None,
               compare: list[str] | None = None) -> dict[str, tuple[str | None, dict[str, str]]]:
    """name -> (LD_PRELOAD library or None, extra environment). compare: LABEL=PATH entries,
    other preload libraries run in the same repetitions under the name pa:LABEL."""
    arch = "/usr/lib/x86_64-linux-gnu/"
    libs: dict[str, str | None] = {
        "mimalloc": find_so(["libmimalloc2.0", "libmimalloc-dev"], "libmimalloc.so",
                            [arch + "libmimalloc.so.2", arch + "libmimalloc.so"]),
        "jemalloc": find_so(["libjemalloc2", "libjemalloc-dev"], "libjemalloc.so",
                            [arch + "libjemalloc.so.2"]),
    }
    src = pyalloc_lib
    if not src:
        sys.path.insert(0, ROOT)
        try:
            import pyalloc
            src = pyalloc.preload_path()
        except Exception as e:  # noqa: BLE001 - any failure means "no pyalloc"
            print(f"pyalloc: preload library not found ({e}); build it with "
                  "`python3 setup.py -q build_ext --inplace`", file=sys.stderr)
    if src:
        libs["pyalloc"] = snapshot(src, tmp, "pyalloc")
    extra_names = []
    for entry in compare or []:
        label, sep, path = entry.partition("=")
        if not sep or not label or not os.path.isfile(path):
            sys.exit(f"bench_preload: --compare wants LABEL=PATH to a library, not {entry!r}")
        name = "pa:" + label
        libs[name] = snapshot(path, tmp, name)
        extra_names.append(name)
    out: dict[str, tuple[str | None, dict[str, str]]] = {"glibc": (None, {})}
    for name in list(ALLOCATORS[1:]) + extra_names:
        lib = libs.get(name)
        if not lib:
            print(f"{name}: not installed, skipped (apt-get install lib{name}-dev)", file=sys.stderr)
            continue
        extra: dict[str, str] = {}
        ok, err = probe(lib, extra)
        if not ok and "static TLS" in err:
            extra = {"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=4194304"}
            ok, err = probe(lib, extra)
        if not ok:
            print(f"{name}: {lib} does not load with LD_PRELOAD, skipped: {err}", file=sys.stderr)
            continue
        out[name] = (lib, extra)
        if name != "pyalloc" and not name.startswith("pa:"):
            print(f"{name}: {lib}" + (f" ({' '.join(f'{k}={v}' for k, v in extra.items())})" if extra else ""))
    return out


# ---- workloads ----

class Workload:
    def __init__(self, name: str, argv: list[str], stdin: str | None = None,
                 env: dict[str, str] | None = None, output_file: str | None = None):
        self.name, self.argv, self.stdin, self.env = name, argv, stdin, env or {}
        self.output_file = output_file  # a file the program writes, hashed after each run


def compile_c(name: str, tmp: str) -> str:
    gcc = shutil.which("gcc")
    if not gcc:
        sys.exit(f"bench_preload: needs gcc to build bench/{name}.c")
    exe = os.path.join(tmp, name)
    subprocess.run([gcc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread",
                    os.path.join(BENCH, name + ".c"), "-o", exe], check=True)
    return exe


def workloads(tmp: str, scale: float) -> list[Workload]:
    gcc = shutil.which("gcc")
    exe = compile_c("alloc_workloads", tmp)
    src = os.path.join(BENCH, "alloc_workloads.c")
    s = [] if scale == 1.0 else [str(scale)]
    out = [Workload(w, [exe, w] + s) for w in ("churn", "mixed", "prodcons", "pool", "realloc",
                                                  "trees")]

    py = os.path.realpath(sys.executable)  # the interpreter itself, not a pyenv shell shim
    script = os.path.join(tmp, "workload.py")
    with open(script, "w") as f:
        f.write(PY_WORKLOAD)
    out.append(Workload("python3 json+re", [py, "-I", script], env={"PYTHONHASHSEED": "0"}))
    growth = os.path.join(tmp, "growth.py")
    with open(growth, "w") as f:
        f.write(PY_GROWTH)
    out.append(Workload("python3 growth", [py, "-I", growth]))

    if shutil.which("sqlite3"):
        sql = os.path.join(tmp, "script.sql")
        with open(sql, "w") as f:
            f.write(SQL_SCRIPT)
        out.append(Workload("sqlite3 script", [shutil.which("sqlite3"), ":memory:"], stdin=sql))
    else:
        print("sqlite3: not installed, skipped", file=sys.stderr)

    if shutil.which("sort"):
        data = os.path.join(tmp, "sort.txt")
        r = random.Random(1)
        with open(data, "w") as f:
            f.writelines("%08x %s\n" % (r.getrandbits(32), "x" * r.randrange(40))
                         for _ in range(250000))
        result = os.path.join(tmp, "sorted.txt")
        out.append(Workload("sort 7 MB", [shutil.which("sort"), "-k2,2", "-k1,1r", "-o", result,
                                           data], env={"LC_ALL": "C"}, output_file=result))

    obj = os.path.join(tmp, "gcc_out.o")
    copy = os.path.join(tmp, "compiled.c")  # a fixed copy, so the object cannot change
    shutil.copy(src, copy)
    out.append(Workload("gcc -O2 -g", [gcc, "-O2", "-g", "-c", copy, "-o", obj], output_file=obj))
    return out


# ---- running ----

class Result:
    def __init__(self, wall: float, cpu: float, rss_kb: int, status: int, stdout: bytes,
                 stderr: bytes, timed_out: bool):
        self.wall, self.cpu, self.rss_kb, self.status = wall, cpu, rss_kb, status
        self.stdout, self.stderr, self.timed_out = stdout, stderr, timed_out


def run_once(w: Workload, lib: str | None, extra: dict[str, str], launcher: str, tmp: str,
             timeout: float) -> Result:
    env = preload_env(None, {**extra, **w.env})
    if lib:
        env["BENCH_LD_PRELOAD"] = lib  # the launcher sets LD_PRELOAD for the child only
    if w.output_file and os.path.exists(w.output_file):
        os.unlink(w.output_file)
    stats = os.path.join(tmp, "launch.txt")
    with tempfile.TemporaryFile(dir=tmp) as out, tempfile.TemporaryFile(dir=tmp) as err, \
            open(w.stdin or os.devnull, "rb") as stdin:
        proc = subprocess.Popen([launcher, stats] + w.argv, stdin=stdin, stdout=out, stderr=err,
                                env=env, start_new_session=True)
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    wall, cpu, rss, status = 0.0, 0.0, 0, -1000
    if not timed_out and proc.returncode == 0:
        with open(stats) as f:
            fields = f.read().split()
        wall, cpu, rss, status = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
    if w.output_file and os.path.exists(w.output_file):
        with open(w.output_file, "rb") as f:
            stdout += b"\n[output file sha256 " + hashlib.sha256(f.read()).hexdigest().encode() + b"]"
    return Result(wall, cpu, rss, status, stdout, stderr, timed_out)


def repro(w: Workload, lib: str | None, extra: dict[str, str]) -> str:
    env = {**extra, **w.env, **({"LD_PRELOAD": lib} if lib else {})}
    cmd = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(w.argv)
    return cmd.strip() + (f" < {w.stdin}" if w.stdin else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each run (default 5)")
    ap.add_argument("--only", help="comma-separated workload name prefixes")
    ap.add_argument("--allocators", default=",".join(ALLOCATORS),
                    help="comma-separated subset of " + ",".join(ALLOCATORS))
    ap.add_argument("--scale", type=float, default=1.0, help="size of the C workloads (default 1)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a run is a hang")
    ap.add_argument("--pyalloc-lib", metavar="PATH",
                    help="the preload library to test (default: pyalloc.preload_path() of this tree)")
    ap.add_argument("--compare", metavar="LABEL=PATH", action="append", default=[],
                    help="another preload library, run in the same repetitions as column pa:LABEL "
                         "(e.g. the build before a change); repeatable")
    args = ap.parse_args()

    load0 = os.getloadavg()
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="bench_preload.") as tmp:
        allocs = allocators(tmp, args.pyalloc_lib, args.compare)
        wanted = args.allocators.split(",")
        allocs = {k: v for k, v in allocs.items()
                  if k in wanted or k == "glibc" or k.startswith("pa:")}
        names = list(allocs)
        ws = workloads(tmp, args.scale)
        launcher = compile_c("preload_launch", tmp)
        if args.only:
            prefixes = args.only.split(",")
            ws = [w for w in ws if any(w.name.startswith(p) for p in prefixes)]

        results: dict[tuple[str, str], list[Result]] = {}
        problems: list[str] = []
        bad: set[tuple[str, str]] = set()
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for w in ws:
                for a in order:
                    lib, extra = allocs[a]
                    r = run_once(w, lib, extra, launcher, tmp, args.timeout)
                    results.setdefault((w.name, a), []).append(r)
                    ref = results[(w.name, "glibc")][0] if (w.name, "glibc") in results else None
                    what = None
                    if r.timed_out:
                        what = f"timed out after {args.timeout:.0f} s (hang?)"
                    elif r.status != 0:
                        what = f"exit status {r.status}"
                    elif ref is not None and r.stdout != ref.stdout:
                        what = "output differs from glibc's"
                    if what and (w.name, a) not in bad:
                        bad.add((w.name, a))
                        problems.append(
                            f"{w.name} under {a}: {what}\n  reproduce: {repro(w, lib, extra)}\n"
                            f"  stdout: {r.stdout[-300:]!r}\n  glibc:  {ref.stdout[-300:] if ref else b''!r}\n"
                            f"  stderr: {r.stderr[-600:]!r}")
                    print(f"  rep {rep + 1}/{args.reps} {w.name:<16} {a:<9} {r.wall:7.3f} s "
                          f"{r.rss_kb / 1024:7.1f} MiB" + (f"  ** {what}" if what else ""),
                          file=sys.stderr, flush=True)
        load1 = os.getloadavg()
        elapsed = time.time() - t_start

    report(ws, names, results, bad, args.reps)
    print(f"\n{args.reps} repetitions, {elapsed:.0f} s in all; load average "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start, "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end; {os.cpu_count()} CPUs")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(p)
    return 1 if problems else 0


def report(ws, names, results, bad, reps) -> None:
    def ratios(w, a, attr):
        g, x = results[(w, "glibc")], results[(w, a)]
        return [getattr(xi, attr) / getattr(gi, attr) for gi, xi in zip(g, x) if getattr(gi, attr)]

    others = [a for a in names if a != "glibc"]
    cols = [f"{a:>9}" for a in others]
    for title, attr, unit, fmt in (
            ("wall time", "wall", "s", "{:8.3f}"),
            ("CPU time (user+sys)", "cpu", "s", "{:8.3f}"),
            ("peak RSS", "rss_kb", "MiB", "{:8.1f}")):
        scale = 1 / 1024 if attr == "rss_kb" else 1
        print(f"\n{title}: glibc's median, and the median ratio to glibc in the same repetition")
        print(f"| {'workload':<16} | {'glibc ' + unit:>9} | " + " | ".join(cols) + " |")
        print(f"|{'-' * 18}|{'-' * 10}:|" + "|".join("-" * 10 + ":" for _ in others) + "|")
        for w in ws:
            g = statistics.median(getattr(r, attr) for r in results[(w.name, "glibc")]) * scale
            cells = []
            for a in others:
                if (w.name, a) in bad:
                    cells.append(f"{'WRONG':>9}")
                else:
                    rs = ratios(w.name, a, attr)
                    cells.append(f"{statistics.median(rs):9.2f}" if rs else f"{'-':>9}")
            print(f"| {w.name:<16} | {fmt.format(g):>9} | " + " | ".join(cells) + " |")

    if "pyalloc" in names:
        print("\npyalloc against the goal (faster than glibc, peak RSS within 1.2x):")
        for w in ws:
            if (w.name, "pyalloc") in bad:
                print(f"  {w.name:<16} WRONG OUTPUT / FAILED")
                continue
            t = statistics.median(ratios(w.name, "pyalloc", "wall"))
            m = statistics.median(ratios(w.name, "pyalloc", "rss_kb"))
            spread = ratios(w.name, "pyalloc", "wall")
            cpu = ratios(w.name, "pyalloc", "cpu")
            # The middle half of the repetitions' ratios: steadier than their extremes, which
            # one slow moment of the machine sets.
            q = statistics.quantiles(spread, n=4) if len(spread) > 1 else [t, t, t]
            c = statistics.median(cpu) if cpu else float("nan")
            qc = statistics.quantiles(cpu, n=4) if len(cpu) > 1 else [c, c, c]
            print(f"  {w.name:<16} time {t:5.2f} ({min(spread):.2f}-{max(spread):.2f}, middle half "
                  f"{q[0]:.2f}-{q[2]:.2f}) {'ok ' if t < 1 else 'NO '}  rss {m:5.2f} "
                  f"{'ok' if m <= 1.2 else 'NO'}   cpu {c:5.3f} (middle half {qc[0]:.3f}-{qc[2]:.3f})")


if __name__ == "__main__":
    sys.exit(main())
