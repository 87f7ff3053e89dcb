"""Real, unmodified programs on the whole stack (pyalloc run / the preload library).

Each program runs twice, without and with the preload library, and must give the same
output and exit status. The programs: python3 (json, re, sqlite3 and decimal over a few MB,
which also dlopens extension modules), sqlite3 running a script, a compiler (gcc), git (which
forks), a multi-threaded C program freeing across threads, and a C program that forks.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import pyalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Under the sanitizer run (make asan-pytest) python itself runs on ASan's allocator, which
# must come first in LD_PRELOAD: a second malloc replacement cannot be tested there.
pytestmark = pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                                reason="the preload library is not tested under ASan")
TIMEOUT = 120


def run(cmd, *, preload: bool, stats: bool = False, cwd=None, stdin=None, env_extra=None,
        options=()):
    """cmd, natively or under `pyalloc run [--stats] [options] --`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    full = ([sys.executable, "-m", "pyalloc", "run", *options] + (["--stats"] if stats else []) +
            ["--"] + cmd)
    return subprocess.run(full if preload else cmd, cwd=cwd, env=env, input=stdin,
                          capture_output=True, timeout=TIMEOUT)


def same_on_both(cmd, **kw):
    """Runs cmd natively and on pyalloc; asserts identical stdout and exit status."""
    native = run(cmd, preload=False, **kw)
    ours = run(cmd, preload=True, **kw)
    assert ours.returncode == native.returncode, ours.stderr.decode(errors="replace")[-2000:]
    assert ours.stdout == native.stdout
    return native, ours


def test_preload_path_is_a_shared_library():
    path = pyalloc.preload_path()
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"


PY_WORKLOAD = textwrap.dedent("""
    import decimal, hashlib, json, re, sqlite3, sys
    rows = [{"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5),
             "price": str(decimal.Decimal(i) / 7)} for i in range(60000)]
    text = json.dumps(rows)
    assert len(text) > 3_000_000
    back = json.loads(text)
    words = re.findall(r"item(\\d+)", text)
    db = sqlite3.connect(":memory:")
    db.execute("create table t (id integer, name text)")
    db.executemany("insert into t values (?, ?)", ((r["id"], r["name"]) for r in back))
    total = db.execute("select count(*), sum(id) from t").fetchone()
    print(len(text), len(words), total, hashlib.sha256(text.encode()).hexdigest())
    sys.exit(3)
""")


def test_python_json_re_sqlite_workload():
    native, ours = same_on_both([sys.executable, "-c", PY_WORKLOAD])
    assert native.returncode == 3 and b"(60000," in native.stdout


def test_stats_report_every_layer():
    r = run([sys.executable, "-c", "x = [bytes(1000) for _ in range(10000)]"], preload=True,
            stats=True)
    assert r.returncode == 0
    err = r.stderr.decode()
    for layer in ("pyalloc: crt", "pyalloc: heap", "pyalloc: virtual"):
        assert layer in err
    # bytes(1000) is zeroed memory: CPython asks calloc for it.
    counts = {k: int(err.split(k + " ")[1].split(",")[0]) for k in ("malloc", "calloc", "free")}
    assert counts["malloc"] + counts["calloc"] >= 10000 and counts["free"] >= 10000


@pytest.mark.skipif(not shutil.which("sort"), reason="no sort program")
def test_stats_reach_stderr_when_the_program_closes_it_at_exit():
    # coreutils close stdout and stderr in an atexit handler that runs before the report.
    r = run(["sort", "/dev/null"], preload=True, stats=True)
    assert r.returncode == 0
    assert "pyalloc: virtual" in r.stderr.decode()


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="no sqlite3 program")
def test_sqlite3_script():
    script = b"""
        create table t(a integer, b text);
        with recursive n(i) as (select 1 union all select i + 1 from n where i < 20000)
        insert into t select i, printf('row %d', i) from n;
        create index ti on t(b);
        select count(*), sum(a), max(b) from t where b like 'row 1%';
        select group_concat(a) from (select a from t order by b desc limit 5);
    """
    native, _ = same_on_both(["sqlite3", ":memory:"], stdin=script)
    assert native.stdout.startswith(b"11111|")


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_gcc_compiles_and_the_program_runs(tmp_path):
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){ printf("hi %d\\n", 6 * 7); return 4; }\n')
    for preload in (False, True):
        exe = tmp_path / f"hello{int(preload)}"
        r = run(["gcc", "-O2", "-o", str(exe), str(src)], preload=preload)
        assert r.returncode == 0, r.stderr
        out = subprocess.run([str(exe)], capture_output=True)
        assert (out.returncode, out.stdout) == (4, b"hi 42\n")


THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define N 4
#define ROUNDS 20000
static void *slots[N][64];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *work(void *arg) {
    long id = (long)arg, sum = 0;
    unsigned seed = (unsigned)id * 2654435761u;
    for (int i = 0; i < ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 8) % 700;
        char *p = malloc(n);
        memset(p, (int)(n & 0xff), n);
        sum += p[n - 1];
        /* hand the block to another thread's slot; free what was there (cross-thread free) */
        int other = (int)((id + 1 + i) % N), k = (int)((seed >> 4) % 64);
        pthread_mutex_lock(&lock);
        void *old = slots[other][k];
        slots[other][k] = p;
        pthread_mutex_unlock(&lock);
        free(old);
        if (i % 1000 == 0) { void *a = NULL; if (posix_memalign(&a, 256, 1000) || ((size_t)a & 255)) abort(); free(a); }
    }
    return (void *)sum;
}
int main(void) {
    pthread_t t[N]; long total = 0;
    for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < N; i++) { void *r; pthread_join(t[i], &r); total += (long)r; }
    for (int i = 0; i < N; i++) for (int k = 0; k < 64; k++) free(slots[i][k]);
    printf("total %ld\n", total);
    return 0;
}
"""

FORK_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *churn(void *arg) { (void)arg; while (!stop) { void *p = malloc(64); free(p); } return NULL; }
int main(void) {
    pthread_t t; pthread_create(&t, NULL, churn, NULL);
    int ok = 0;
    for (int i = 0; i < 40; i++) {
        char *keep = strdup("parent data");
        pid_t pid = fork();
        if (pid == 0) {
            char *c = malloc(1000); strcpy(c, keep); free(keep); free(c);
            _exit(strlen("child") == 5 ? 7 : 1);
        }
        int st; waitpid(pid, &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 7;
        free(keep);
    }
    stop = 1; pthread_join(t, NULL);
    printf("%d children ok\n", ok);
    return 0;
}
"""


def build(tmp_path, name, source):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(src)], check=True)
    return str(exe)


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_multithreaded_program_with_cross_thread_frees(tmp_path):
    native, _ = same_on_both([build(tmp_path, "threads", THREADS_C)])
    assert native.stdout.startswith(b"total ")


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_fork_while_another_thread_allocates(tmp_path):
    native, _ = same_on_both([build(tmp_path, "forker", FORK_C)])
    assert native.stdout == b"40 children ok\n"


# A library whose constructor allocates and frees before the preload library's own
# constructors have run (ld.so runs a preloaded library's initialisers after those of the
# program's libraries). libgnutls does this, and curl died of SIGFPE there: the LFH's slot
# geometry was filled in by a constructor, so these frees found every slot size 0.
CTOR_LIB_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
int ctor_reused, ctor_aligned_ok;
__attribute__((constructor)) static void early(void)
{
    void *p[64];
    for (int size = 16; size <= 4096; size *= 4) { /* well past the LFH's activation */
        for (int i = 0; i < 64; i++) p[i] = malloc(size);
        for (int i = 0; i < 64; i++) free(p[i]);
        void *again = malloc(size);
        for (int i = 0; i < 64; i++) ctor_reused += again == p[i];
        free(again);
    }
    void *a = NULL;
    if (posix_memalign(&a, 256, 100) == 0 && ((uintptr_t)a & 255) == 0) ctor_aligned_ok = 1;
    free(a);
}
"""
CTOR_MAIN_C = r"""
#include <stdio.h>
extern int ctor_reused, ctor_aligned_ok;
int main(void) { printf("reused %d aligned %d\n", ctor_reused, ctor_aligned_ok); return 0; }
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_a_library_constructor_frees_before_the_preload_library_is_initialised(tmp_path):
    (tmp_path / "early.c").write_text(CTOR_LIB_C)
    (tmp_path / "main.c").write_text(CTOR_MAIN_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp_path / "libearly.so"),
                    str(tmp_path / "early.c")], check=True)
    exe = str(tmp_path / "main")
    subprocess.run(["gcc", "-O2", "-o", exe, str(tmp_path / "main.c"), "-L", str(tmp_path),
                    "-learly", "-Wl,-rpath," + str(tmp_path)], check=True)
    native, ours = same_on_both([exe])
    # Every size's freed blocks are handed out again (each malloc reuses one of them).
    assert native.stdout == b"reused 5 aligned 1\n"
    assert ours.stderr == b""


# Everyday programs, each a shell pipeline run whole on the stack (every process in it is
# preloaded). curl is here because its libraries' constructors allocate before the preload
# library's own (see the test above); it read the file through libgnutls's initialiser.
EVERYDAY = {
    "perl": ("perl", "perl -e 'my %h;"
             " $h{$_ * 7919 % 100003} = [$_, \"x\" x ($_ % 50)] for 1..100000;"
             " my @a = sort { $a <=> $b } keys %h; my $n = 0; $n += length($h{$_}[1]) for @a;"
             " print scalar(@a), \" $a[0] $a[-1] $n\\n\"'"),
    "awk": ("awk", "seq 200000 | awk '{ c[$1 % 997] += length($1) } END { for (k in c) s += c[k];"
            " print length(c), s }'"),
    "tar-gzip": ("gzip", "seq 300000 > n.txt && tar -cf - n.txt | gzip -9 | gunzip | tar -xOf -"
                 " | sort -n | tail -1"),
    "sort-uniq": ("sort", "seq 200000 | sed 's/.$//' | sort | uniq -c | sort -rn | head -3"),
    "curl": ("curl", "seq 100000 > f.txt && curl -s file://$PWD/f.txt | wc -lc"),
    "bash-subshells": ("bash", "bash -c 'x=0; for i in $(seq 200);"
                       " do x=$((x + $(echo $i | wc -c))); done; echo $x'"),
}


@pytest.mark.parametrize("name", sorted(EVERYDAY))
def test_everyday_programs(tmp_path, name):
    tool, pipeline = EVERYDAY[name]
    if not shutil.which(tool):
        pytest.skip(f"no {tool}")
    native, _ = same_on_both(["sh", "-c", "set -e; " + pipeline], cwd=tmp_path)
    assert native.returncode == 0 and native.stdout.strip()


def test_a_program_under_an_address_space_limit_runs_with_less_room():
    """`ulimit -v` (RLIMIT_AS) 1.5 GB: the preload library reserved 64 GiB and aborted every
    program. Now the current process takes half the limit, and a 300 MB bytearray (malloc'd)
    fits there as it does natively, while 900 MB more raises MemoryError on the stack (the other
    half is left to the program's own mappings) where natively it fits."""
    script = ("import sys\n"
              "b = bytearray(300 << 20); b[-1] = 7; print(len(b), b[-1])\n"
              "try: bytearray(900 << 20); print('fits')\n"
              "except MemoryError: print('MemoryError')\n")
    cmd = ["sh", "-c", 'ulimit -v 1500000 && exec "$0" -c "$1"', sys.executable, script]
    native, ours = run(cmd, preload=False), run(cmd, preload=True)
    assert (native.returncode, native.stdout) == (0, b"314572800 7\nfits\n"), native.stderr
    assert (ours.returncode, ours.stdout) == (0, b"314572800 7\nMemoryError\n"), ours.stderr


# CPython's own regression tests of the modules that allocate the most through malloc (their
# containers, codecs and pickling; the garbage collector and weak references; thread-local
# data): 3,600 tests, about 15 s natively. The whole suite is `make cpython-suite`
# (tests/cpython_suite.py, about 30 minutes); these guard it in every run.
CPYTHON_TESTS = ["test_json", "test_re", "test_dict", "test_list", "test_set", "test_bytes",
                 "test_struct", "test_array", "test_deque", "test_heapq", "test_threading_local",
                 "test_weakref", "test_gc", "test_pickle", "test_codecs"]


@pytest.mark.skipif(importlib.util.find_spec("test.support") is None,
                    reason="this Python has no test package (Debian: libpython3.X-testsuite)")
def test_cpython_regression_tests_pass_on_the_stack(tmp_path):
    cmd = [sys.executable, "-m", "test", "-q", *CPYTHON_TESTS]
    native, ours = run(cmd, preload=False, cwd=tmp_path), run(cmd, preload=True, cwd=tmp_path)
    assert native.returncode == 0, native.stdout[-3000:]
    assert ours.returncode == 0, ours.stdout[-3000:] + ours.stderr[-3000:]
    assert b"Result: SUCCESS" in ours.stdout
    ran = re.search(rb"Total tests: run=([0-9,]+)", ours.stdout)
    assert ran and ran.group(0) in native.stdout  # as many tests ran as natively


def test_a_limit_too_small_for_any_address_space_ends_the_program_with_a_message():
    """Under `ulimit -v` 12 MB the current process cannot reserve even the smallest address
    space it tries (16 MiB, halving from half the limit): the program cannot run on the stack,
    and says so with the size it tried last before it aborts (the message said 16 MiB whatever
    the size)."""
    cmd = ["sh", "-c", 'ulimit -v 12000 && exec "$0" hi', shutil.which("echo")]
    native, ours = run(cmd, preload=False), run(cmd, preload=True)
    assert (native.returncode, native.stdout) == (0, b"hi\n"), native.stderr
    assert ours.returncode == -signal.SIGABRT and ours.stdout == b"", ours
    assert b"pyalloc: the host refused even a 16 MiB reservation for this process's address" \
           b" space\n" in ours.stderr


@pytest.mark.skipif(not shutil.which("valgrind"), reason="no valgrind")
def test_under_valgrind_without_setting_the_address_space():
    """valgrind refuses a 64 GiB reservation: the current process halves it until it fits
    (PYALLOC_ADDRESS_SPACE was needed before)."""
    env = {k: v for k, v in os.environ.items() if k != "PYALLOC_ADDRESS_SPACE"}
    r = subprocess.run(["valgrind", "-q", "--tool=none", "--trace-children=yes", "env",
                        "LD_PRELOAD=" + pyalloc.preload_path(), "sort", "-n"],
                       input=b"3\n10\n2\n", capture_output=True, env=env, timeout=TIMEOUT)
    assert (r.returncode, r.stdout) == (0, b"2\n3\n10\n"), r.stderr[-2000:]


def test_python_faulthandler_reports_a_raised_sigsegv_and_the_program_dies_of_it():
    """The preload library's fault handler (guard pages, write watches) passed a raised SIGSEGV
    on by returning, which lost it: CPython's test_faulthandler failed 7 tests on the stack."""
    code = "import faulthandler; faulthandler.enable(); faulthandler._sigsegv(); print('alive')"
    native, ours = same_on_both([sys.executable, "-c", code])
    assert native.returncode == -11 and native.stdout == b""
    assert b"Fatal Python error: Segmentation fault" in ours.stderr


@pytest.mark.skipif(not shutil.which("git"), reason="no git")
def test_git_init_add_commit_log(tmp_path):
    outs = []
    for preload in (False, True):
        repo = tmp_path / f"repo{int(preload)}"
        repo.mkdir()
        for i in range(30):
            (repo / f"f{i}.txt").write_text(f"line {i}\n" * (i + 1))
        env = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
               "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
        steps = [["git", "init", "-q", "-b", "main"], ["git", "add", "."],
                 ["git", "commit", "-q", "-m", "import"], ["git", "log", "--format=%H %s"],
                 ["git", "ls-files", "-s"]]
        out = []
        for cmd in steps:
            r = run(cmd, preload=preload, cwd=repo, env_extra=env)
            assert r.returncode == 0, (cmd, r.stderr)
            out.append(r.stdout)
        outs.append(out)
    assert outs[0] == outs[1]


CONTRACT_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int bad;
#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); bad++; } } while (0)
static int zero(const unsigned char *p, size_t n) { for (size_t i = 0; i < n; i++) if (p[i]) return 0; return 1; }
int main(void) {
    static const size_t sizes[] = {1, 8, 24, 100, 1000, 4000, 16000, 16368, 16369, 40000, 200000, 2000000};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            unsigned char *d[8];
            for (int k = 0; k < 8; k++) { d[k] = malloc(n); CHECK(d[k]); memset(d[k], 0xA5, n); }
            for (int k = 0; k < 8; k++) free(d[k]);   /* dirty blocks to be reused */
            for (int k = 0; k < 8; k++) { d[k] = calloc(n, 1); CHECK(d[k] && zero(d[k], n)); memset(d[k], 0x5A, n); }
            for (int k = 0; k < 8; k++) free(d[k]);
            unsigned char *c = calloc(1, n);
            CHECK(c && zero(c, n) && malloc_usable_size(c) >= n);
            for (size_t j = 0; j < n; j++) c[j] = (unsigned char)(j * 7);
            unsigned char *g = realloc(c, n * 3 + 5);   /* grow keeps the bytes */
            CHECK(g && malloc_usable_size(g) >= n * 3 + 5);
            int same = 1;
            for (size_t j = 0; j < n; j++) same &= g[j] == (unsigned char)(j * 7);
            CHECK(same);
            unsigned char *s = realloc(g, n / 2 + 1);    /* shrink keeps the bytes */
            CHECK(s);
            for (size_t j = 0; j < n / 2 + 1; j++) same &= s[j] == (unsigned char)(j * 7);
            CHECK(same);
            errno = 0;
            CHECK(realloc(s, 0) == NULL);                /* frees */
            void *a = NULL;
            CHECK(posix_memalign(&a, 4096, n) == 0 && ((uintptr_t)a & 4095) == 0);
            memset(a, 3, n);
            CHECK(malloc_usable_size(a) >= n);
            unsigned char *ra = realloc(a, n + 100);     /* an over-aligned block moves */
            CHECK(ra && ra[0] == 3 && ra[n - 1] == 3);
            free(ra);
            void *b = aligned_alloc(64, n);
            CHECK(b && ((uintptr_t)b & 63) == 0);
            free(b);
        }
    void *z = malloc(0);
    CHECK(z != NULL);
    free(z);
    unsigned char *r0 = realloc(NULL, 100);
    CHECK(r0 != NULL);
    free(r0);
    errno = 0;
    CHECK(calloc((size_t)1 << 40, (size_t)1 << 40) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc((size_t)-1 / 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, (size_t)1 << 40, (size_t)1 << 40) == NULL && errno == ENOMEM);
    free(NULL);
    printf("%s\n", bad ? "bad" : "ok");
    return bad != 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
@pytest.mark.parametrize("env", [{}, {"PYALLOC_STATS": "1"}, {"PYALLOC_CRT_DEBUG": "1"}],
                         ids=["release", "stats", "debug-crt"])
def test_malloc_family_contract(tmp_path, env):
    """calloc zeroes reused (dirty) blocks of every size class, realloc keeps the bytes and
    moves over-aligned blocks, the failures set ENOMEM: on the fast paths and the full ones."""
    native, ours = same_on_both([build(tmp_path, "contract", CONTRACT_C)], env_extra=env)
    assert native.stdout == b"ok\n", native.stdout


LEAK_C = r"""
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
char *volatile kept, *volatile freed_at_exit, *volatile freed; /* (so that gcc keeps them) */
static void tidy(void) { free(freed_at_exit); }
static void close_streams(void) { fclose(stdout); fclose(stderr); } /* as coreutils do */
int main(void)
{
    kept = malloc(40);
    strcpy(kept, "kept to the end");
    atexit(close_streams);
    atexit(tidy);
    freed_at_exit = malloc(24); /* freed by an atexit function: not a leak */
    freed = malloc(10);
    free(freed);
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_debug_crt_dumps_the_leaks_at_exit_with_leak_check_flag(tmp_path):
    """_CRTDBG_LEAK_CHECK_DF: UCRT dumps the leaks when the program ends, after its atexit
    functions (the block an atexit function frees is no leak; one that closes stderr doesn't
    silence the dump); without the flag, nothing."""
    exe = build(tmp_path, "leak", LEAK_C)
    flags = {"PYALLOC_CRT_DEBUG": "1", "PYALLOC_CRT_DBG_FLAG": hex(pyalloc._CRTDBG_ALLOC_MEM_DF |
                                                                   pyalloc._CRTDBG_LEAK_CHECK_DF)}
    native, ours = same_on_both([exe], env_extra=flags)
    err = ours.stderr.decode()
    assert err.startswith("Detected memory leaks!\nDumping objects ->\n"), err
    assert err.endswith("Object dump complete.\n"), err
    assert err.count("normal block at") == 1, err  # the 40 bytes; not the 24, nor the 10
    assert " 40 bytes long.\n Data: <kept to the end > 6B 65 70 74 " in err, err
    assert ours.stdout == native.stdout == b""

    quiet = run([exe], preload=True, env_extra={"PYALLOC_CRT_DEBUG": "1"})
    assert quiet.returncode == 0 and quiet.stderr == b""


LIBC_LEAK_C = r"""
#include <locale.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
char *volatile kept;
int main(void)
{
    setlocale(LC_ALL, "");            /* glibc keeps the locale's data, */
    struct passwd *pw = getpwuid(0);  /* NSS's tables and modules, */
    time_t t = 0;
    char buf[64];
    strftime(buf, sizeof buf, "%Y %H", gmtime(&t));
    printf("%s %s\n", pw ? "user" : "?", buf); /* and stdout's buffer (a pipe here) */
    kept = malloc(40);
    strcpy(kept, "kept to the end");
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_the_leak_dump_leaves_out_glibcs_own_blocks(tmp_path):
    """glibc's blocks (stdio buffers, locale, NSS) are given back with __libc_freeres before
    the dump at exit, as UCRT leaves its own _CRT_BLOCKs out of it: the program's one leak is
    all that is listed (153 blocks more without)."""
    exe = build(tmp_path, "libc_leak", LIBC_LEAK_C)
    native = run([exe], preload=False)
    out = run([exe], preload=True, options=["--leaks"])
    assert out.returncode == 0 and out.stdout == native.stdout == b"user 1970 00\n"
    err = out.stderr.decode()
    assert err.startswith("Detected memory leaks!\n"), err
    assert err.count("normal block at") == 1 and " 40 bytes long." in err, err


OVERRUN_C = r"""
#include <stdlib.h>
#include <string.h>
char *volatile p;
int main(void)
{
    p = malloc(8);
    memcpy(p, "12345678X", 9); /* one byte past the block */
    free(p);
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_run_options_debug_crt_and_leaks(tmp_path):
    """pyalloc run --debug-crt puts the program on the debug CRT (its no-man's land catches an
    overrun at free); --leaks adds _CRTDBG_LEAK_CHECK_DF to the flags it is given."""
    exe = build(tmp_path, "overrun", OVERRUN_C)
    out = run([exe], preload=True, options=["--debug-crt"])
    assert out.returncode == 0 and b"HEAP CORRUPTION DETECTED" in out.stderr, out.stderr
    assert b"Detected memory leaks!" not in out.stderr
    quiet = run([exe], preload=True)
    assert quiet.returncode == 0 and quiet.stderr == b""  # the release CRT checks nothing

    leak = build(tmp_path, "leak", LEAK_C)
    for preset in ("", "0x1", "5"):  # ("": unset, the debug CRT's default flags)
        out = run([leak], preload=True, options=["--leaks"],
                  env_extra={"PYALLOC_CRT_DBG_FLAG": preset})
        assert out.returncode == 0 and out.stderr.startswith(b"Detected memory leaks!"), out.stderr
    out = run([leak], preload=True, options=["--leaks"], env_extra={"PYALLOC_CRT_DBG_FLAG": "lots"})
    assert out.returncode == 2 and b"PYALLOC_CRT_DBG_FLAG" in out.stderr


MISUSE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
char *volatile p, *volatile q, *volatile g;
int main(int argc, char **argv)
{
    char stack[64];
    p = malloc(40);
    q = malloc(8);
    g = malloc(8); /* (so that q cannot grow in place) */
    switch (argv[1][0]) {
    case 'd': free(p); free(p); break;                      /* double free */
    case 'i': free(p + 16); break;                          /* inside a block */
    case 's': free(stack); break;                           /* not from malloc */
    case 'r': q = realloc(stack + 8, 100); break;           /* realloc of a foreign pointer */
    case 't': memcpy(p, "0123456789012345678901234567890123456789X", 41); free(p); break;
    case 'u': free(p); memset(p, 0x41, 40); q = malloc(40); break; /* a write after free */
    case 'v': free(p); memset(p, 0x41, 40); q = realloc(q, 40); break; /* the same, realloc */
    }
    puts("survived");
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
@pytest.mark.parametrize("case", ["d", "i", "s", "r"])
def test_a_bad_free_or_realloc_ends_the_program(tmp_path, case):
    """A double free, a free of a pointer inside a block or not from malloc, a realloc of one:
    glibc kills the program (SIGABRT, or SIGSEGV for the stack pointer), and 64-bit Windows
    ends it (terminate-on-corruption is on for every 64-bit process). On the stack the program
    is told why and aborted (it ran on with the pointer ignored)."""
    exe = build(tmp_path, "misuse", MISUSE_C)
    native, ours = run([exe, case], preload=False), run([exe, case], preload=True)
    assert native.returncode in (-6, -11) and native.stdout == b""
    assert ours.returncode == -6 and ours.stdout == b""
    call = "realloc" if case == "r" else "free"
    assert ours.stderr.startswith(f"pyalloc: {call}(0x".encode()), ours.stderr
    assert b"not a busy block of the process heap" in ours.stderr
    assert b"STATUS_HEAP_CORRUPTION 0xC0000374" in ours.stderr


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_run_heap_checks_and_page_heap_catch_overruns_and_writes_after_free(tmp_path):
    """A one-byte overrun: the release heap does not see it; --heap-checks (tail checking)
    and --page-heap (the fill in the page's alignment slack) find it at the free. A write
    into a freed block: the release heap finds it at the next allocation or realloc that
    looks there (its free-list links are checked); under --page-heap the freed block's pages are inaccessible, so the
    write itself faults. An overrun past the 16-byte-aligned end faults under --page-heap."""
    exe = build(tmp_path, "misuse", MISUSE_C)
    corrupted = b"the heap found its metadata corrupted"
    assert run([exe, "t"], preload=True).stdout == b"survived\n"
    for option in ("--heap-checks", "--page-heap"):
        out = run([exe, "t"], preload=True, options=[option])
        assert out.returncode == -6 and out.stdout == b"", out.stderr
        assert out.stderr.startswith(b"pyalloc: free(0x") and corrupted in out.stderr, out.stderr
    for case, call in (("u", b"pyalloc: malloc: "), ("v", b"pyalloc: realloc(0x")):
        out = run([exe, case], preload=True)
        assert out.returncode == -6 and out.stderr.startswith(call), out.stderr
        assert corrupted in out.stderr
    assert run([exe, "u"], preload=True, options=["--page-heap"]).returncode == -11  # SIGSEGV
    overrun = build(tmp_path, "overrun", OVERRUN_C.replace("12345678X", "1234567890123456X")
                    .replace("9);", "17);"))
    assert run([overrun], preload=True).returncode == 0
    assert run([overrun], preload=True, options=["--page-heap"]).returncode == -11
