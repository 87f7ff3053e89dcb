/* vmtest.h: helpers shared by the C tests of layers 1 and 2 (test_virtual.c, test_mm.c,
 * test_threads.c): private processes, VirtualQuery checks, last-error checks, and a way to
 * observe the access violations that pyalloc hands to the host's previous SIGSEGV handler.
 *
 * Facts are numbered as in ../shared/reference/virtual-memory.md; tests are named after them.
 */
#ifndef VMTEST_H
#define VMTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "pyalloc.h"

#define PAGE ((size_t)0x1000)
#define SLOT ((size_t)0x10000)
#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* A fresh process of `space` bytes (0: the default 64 GiB) with an optional commit limit. */
static inline pa_process_t *vm_new(size_t space, size_t commit_limit)
{
    pa_process_options_t o;
    memset(&o, 0, sizeof o);
    o.address_space = space;
    o.commit_limit = commit_limit;
    NTSTATUS st = (NTSTATUS)0x12345678;
    pa_process_t *p = pa_process_create(&o, &st);
    if (!p) {
        fprintf(stderr, "pa_process_create failed: 0x%08x\n", (unsigned)st);
        abort(); /* every later check would crash anyway */
    }
    CHECK_EQ(st, STATUS_SUCCESS);
    return p;
}

/* Destroys p after checking that the test left nothing behind. */
#define VM_END(p)                                                                                \
    do {                                                                                         \
        pa_vm_stats_t vm_end_s;                                                                  \
        pa_process_stats((p), &vm_end_s);                                                        \
        CHECK_EQ(vm_end_s.pins, 0);                                                              \
        CHECK_EQ(pa_process_destroy(p), STATUS_SUCCESS);                                         \
    } while (0)

/* VirtualQuery that must succeed; the buffer is poisoned first so every field is checked. */
static inline MEMORY_BASIC_INFORMATION vm_query(pa_process_t *p, const void *addr)
{
    MEMORY_BASIC_INFORMATION m;
    memset(&m, 0xA5, sizeof m);
    SIZE_T n = pa_virtual_query(p, addr, &m, sizeof m);
    CHECK_EQ(n, sizeof m);
    return m;
}

/* Every field of VirtualQuery(addr), in the order of the reference's VQ(p) notation. */
#define CHECK_VQ(p, addr, base, abase, aprot, size, state, prot, type)                           \
    do {                                                                                         \
        MEMORY_BASIC_INFORMATION vq_m = vm_query((p), (const void *)(addr));                     \
        CHECK_EQ(vq_m.BaseAddress, (uintptr_t)(base));                                           \
        CHECK_EQ(vq_m.AllocationBase, (uintptr_t)(abase));                                       \
        CHECK_EQ(vq_m.AllocationProtect, (aprot));                                               \
        CHECK_EQ(vq_m.RegionSize, (size));                                                       \
        CHECK_EQ(vq_m.State, (state));                                                           \
        CHECK_EQ(vq_m.Protect, (prot));                                                          \
        CHECK_EQ(vq_m.Type, (type));                                                             \
    } while (0)

/* Shorter form for a region inside a private allocation at abase. */
#define CHECK_REGION(p, addr, abase, aprot, size, state, prot)                                   \
    CHECK_VQ(p, addr, addr, abase, aprot, size, state, prot, MEM_PRIVATE)

/* A call returning 0/NULL/FALSE on failure must fail with last error `gle`. */
#define CHECK_FAILS(call, gle)                                                                   \
    do {                                                                                         \
        pa_set_last_error(0xDEADBEEFu);                                                          \
        CHECK(!(call));                                                                          \
        CHECK_EQ(pa_get_last_error(), (gle));                                                    \
    } while (0)

/* GetWriteWatch/ResetWriteWatch failure: (UINT)-1 and last error `gle`. */
#define CHECK_WW_FAILS(call, gle)                                                                \
    do {                                                                                         \
        pa_set_last_error(0xDEADBEEFu);                                                          \
        CHECK_EQ((call), 0xFFFFFFFFu);                                                           \
        CHECK_EQ(pa_get_last_error(), (gle));                                                    \
    } while (0)

static inline pa_vm_stats_t vm_stats(pa_process_t *p)
{
    pa_vm_stats_t s;
    memset(&s, 0xA5, sizeof s);
    pa_process_stats(p, &s);
    return s;
}

/* Reserve-and-commit helpers for setup (the behaviour under test is checked elsewhere). */
static inline char *vm_alloc(pa_process_t *p, size_t size, DWORD type, DWORD prot)
{
    char *a = pa_virtual_alloc(p, NULL, size, type, prot, PA_OWNER_APP);
    CHECK(a != NULL);
    if (!a) abort();
    return a;
}

static inline void vm_release(pa_process_t *p, void *a)
{
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, PA_OWNER_APP));
}

/* ---- observing access violations ----
 * pyalloc passes faults it does not handle to the SIGSEGV handler that was installed before its
 * own. vm_install_av_catcher() (called from a constructor, before any process exists) installs
 * one that jumps back into VM_EXPECT_AV. */
static sigjmp_buf vm_av_jmp;
static volatile sig_atomic_t vm_av_armed;
static volatile uintptr_t vm_av_addr;

static void vm_av_catcher(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (vm_av_armed) {
        vm_av_armed = 0;
        vm_av_addr = (uintptr_t)info->si_addr;
        siglongjmp(vm_av_jmp, 1);
    }
    signal(sig, SIG_DFL); /* a real crash: let it happen */
}

static inline void vm_install_av_catcher(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = vm_av_catcher;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* Runs stmt, which must raise an access violation at address `at`. */
#define VM_EXPECT_AV(stmt, at)                                                                   \
    do {                                                                                         \
        vm_av_addr = 0;                                                                          \
        if (sigsetjmp(vm_av_jmp, 1) == 0) {                                                      \
            vm_av_armed = 1;                                                                     \
            stmt;                                                                                \
            vm_av_armed = 0;                                                                     \
            CHECK(!"expected an access violation: " #stmt);                                      \
        } else {                                                                                 \
            CHECK_EQ(vm_av_addr, (uintptr_t)(at));                                               \
        }                                                                                        \
    } while (0)

/* A direct load or store that may fault. The compiler barriers matter: a fault runs handlers
 * that change memory the compiler would otherwise assume untouched across a plain access. */
#define VM_BARRIER() __asm__ __volatile__("" ::: "memory")
static inline unsigned char vm_load(const void *a)
{
    VM_BARRIER();
    unsigned char v = *(const volatile unsigned char *)a;
    VM_BARRIER();
    return v;
}
static inline void vm_store(void *a, unsigned char v)
{
    VM_BARRIER();
    *(volatile unsigned char *)a = v;
    VM_BARRIER();
}

#endif /* VMTEST_H */
