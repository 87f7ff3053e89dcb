# Makefile: the C library, the C tests, sanitizer builds and benchmarks.
# The Python extension is built by setup.py; `make test` runs everything a newcomer should.
CC ?= cc
PYTHON ?= python3
BUILD ?= build/c
CSTD = -std=c11
WARN = -Wall -Wextra -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS = $(CSTD) $(WARN) $(CFLAGS) -fPIC -Icsrc/include -Icsrc -pthread
CORE_SRC = $(wildcard csrc/*.c) csrc/os/linux.c
CORE_HDR = $(wildcard csrc/*.h csrc/include/*.h csrc/include/pyalloc/*.h csrc/os/*.h)
TEST_SRC = $(wildcard tests/c/test_*.c)
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all lib preload ctest asan-ctest ext pytest asan-pytest test asan-test cpython-suite bench bench-smoke clean

all: lib

lib: $(BUILD)/libpyalloc.a $(BUILD)/libpyalloc.so

$(BUILD)/%.o: csrc/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

CORE_OBJ = $(patsubst csrc/%.c,$(BUILD)/%.o,$(CORE_SRC))

$(BUILD)/libpyalloc.a: $(CORE_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libpyalloc.so: $(CORE_OBJ)
	$(CC) -shared -pthread -o $@ $^

# The malloc replacement for unmodified programs (pyalloc run uses setup.py's build of it).
preload: $(BUILD)/libpyalloc_preload.so

$(BUILD)/libpyalloc_preload.so: csrc/preload/preload.c $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -g -fPIC -fvisibility=hidden -ftls-model=initial-exec \
	  -Icsrc/include -Icsrc -shared -pthread -o $@ csrc/preload/preload.c $(CORE_SRC)

$(BUILD)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(BUILD)/libpyalloc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/c $< $(BUILD)/libpyalloc.a -o $@

CTESTS = $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# Runs every C test binary; each prints its own "N passed, N failed" line.
ctest: $(CTESTS)
	@set -e; for t in $(CTESTS); do echo "== $$t"; $$t; done

asan-ctest:
	$(MAKE) ctest BUILD=build/asan CFLAGS="-O1 -g $(SAN)"

ext:
	$(PYTHON) setup.py -q build_ext --inplace

pytest: ext
	$(PYTHON) -m pytest -q tests

# pytest with the extension built under ASan+UBSan, the runtime preloaded into python (the
# notebooks, which only drive pyalloc.viz in kernels, run in `make pytest`).
asan-pytest:
	PYALLOC_SANITIZE=1 $(PYTHON) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider --ignore=tests/test_notebooks.py --ignore=tests/test_stubs.py tests; rc=$$?; \
	  $(PYTHON) setup.py -q build_ext --inplace --force; exit $$rc

test: ctest pytest

# CPython's whole regression suite natively and under pyalloc run (about 30 minutes; by hand,
# not in CI: pytest runs 15 of its modules in every run).
cpython-suite: ext
	$(PYTHON) tests/cpython_suite.py

asan-test: asan-ctest asan-pytest

bench: lib
	$(MAKE) -C bench

# Every benchmark once at a tiny scale, so that none of them rots (CI runs it): each must build
# and run, and bench_preload fails when a program crashes or its output differs from glibc's.
# Timings at this scale mean nothing and nothing judges them.
bench-smoke: lib ext
	$(MAKE) -C bench build
	build/bench/bench_virtual 0.01 >/dev/null
	build/bench/bench_heap 0.01 >/dev/null
	$(PYTHON) bench/bench_python.py >/dev/null
	$(PYTHON) bench/bench_crt_python.py --batches 2 --number 20000 >/dev/null
	$(PYTHON) bench/bench_preload.py --reps 1 --scale 0.05 >/dev/null

clean:
	rm -rf build pyalloc/*.so *.egg-info
