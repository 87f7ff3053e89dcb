"""Build of pyalloc's C extension. Metadata lives in pyproject.toml.

Environment: PYALLOC_WERROR=1 turns warnings into errors (CI); PYALLOC_SANITIZE=1 builds
with AddressSanitizer and UBSan (see `make asan-pytest`); PYALLOC_DEBUG=1 enables the
core's internal assertions.
"""
import glob
import os

from setuptools import Extension, setup

# The C stack, bottom up (one file per layer; see csrc/include/pyalloc.h).
CORE = [
    "csrc/os/linux.c",
    "csrc/status.c",
    "csrc/trace.c",
    "csrc/mm.c",
    "csrc/section.c",
    "csrc/virtual.c",
    "csrc/filemap.c",
    "csrc/heap.c",
    "csrc/heap_lfh.c",
    "csrc/heap_debug.c",
    "csrc/heap_win32.c",
    "csrc/crt.c",
    "csrc/crt_debug.c",
    "csrc/crt_win32.c",
    "csrc/new.c",
]
# The binding: one file per Python type, one for errors.
BINDING = [
    "csrc/python/module.c",
    "csrc/python/errors.c",
    "csrc/python/structs.c",
    "csrc/python/process.c",
    "csrc/python/export.c",
    "csrc/python/handle.c",
    "csrc/python/heap.c",
    "csrc/python/crt.c",
    "csrc/python/new.c",
    "csrc/python/host.c",
]
HEADERS = sorted(glob.glob("csrc/**/*.h", recursive=True))

compile_args = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"]
link_args = []
if os.environ.get("PYALLOC_WERROR") == "1":
    compile_args.append("-Werror")
if os.environ.get("PYALLOC_DEBUG") == "1":
    compile_args.append("-DPA_DEBUG=1")
if os.environ.get("PYALLOC_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    compile_args += san + ["-O1", "-g"]
    link_args += san

# The preload library: the whole stack under an unmodified program's malloc (pyalloc run).
# Never sanitized (it replaces the allocator the sanitizer relies on); initial-exec TLS, so
# that no thread-local access can call malloc while malloc runs.
preload_args = [a for a in compile_args if not a.startswith(("-fsanitize", "-O1"))]
preload_args += ["-O2", "-ftls-model=initial-exec"]

setup(
    ext_modules=[
        Extension(
            "pyalloc._core",
            sources=CORE + BINDING,
            depends=HEADERS,
            include_dirs=["csrc/include", "csrc"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        ),
        Extension(
            "pyalloc.libpyalloc_preload",
            sources=CORE + ["csrc/preload/preload.c"],
            depends=HEADERS,
            include_dirs=["csrc/include", "csrc"],
            extra_compile_args=preload_args,
            extra_link_args=["-pthread"],
        ),
    ],
)
