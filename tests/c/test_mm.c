/* test_mm.c: layer 1 as C code meets it: guard pages and write watches hit by direct loads and
 * stores, access violations, the checked copies and pins (pa_mm_*), owners, the address-space
 * walk, commit-charge statistics and process creation. Facts are numbered as in
 * ../shared/reference/virtual-memory.md (24, 69-73, 82); the rest is pyalloc's own contract
 * (pyalloc.h).
 */
#include "vmtest.h" /* first: it sets _GNU_SOURCE */

#include "pyalloc/windows.h"

#define APP PA_OWNER_APP
#define HEAP PA_OWNER_HEAP
#define ANY PA_OWNER_ANY
#define RW PAGE_READWRITE
#define RO PAGE_READONLY
#define NA PAGE_NOACCESS

__attribute__((constructor)) static void install_catcher(void) { vm_install_av_catcher(); }

/* ---- the exception handler: what it saw, and what VirtualQuery said while it ran ---------- */

static struct {
    int n;
    pa_process_t *p;
    NTSTATUS code;
    int write;
    uintptr_t addr;
    DWORD protect_seen; /* VirtualQuery(addr).Protect inside the handler */
} ex;

static void record_exception(pa_process_t *p, NTSTATUS code, int write, uintptr_t address)
{
    MEMORY_BASIC_INFORMATION m;
    ex.n++;
    ex.p = p;
    ex.code = code;
    ex.write = write;
    ex.addr = address;
    ex.protect_seen = pa_virtual_query(p, (void *)address, &m, sizeof m) ? m.Protect : 0xFFFFFFFF;
}

static void watch_exceptions(void)
{
    memset(&ex, 0, sizeof ex);
    pa_set_exception_handler(record_exception);
}

static void unwatch_exceptions(void) { pa_set_exception_handler(NULL); }

static int all_ee(const char *b)
{
    return (unsigned char)b[0] == 0xEE && (unsigned char)b[15] == 0xEE;
}

/* x86-64 tells reads from writes (the page-fault error code); elsewhere write is reported 0. */
#if defined(__x86_64__)
#define WRITE_FLAG 1
#else
#define WRITE_FLAG 0
#endif

/* ---- 1.3 fact 24: access violations --------------------------------------------------------- */

TEST(fact24_reserved_page_access_is_an_access_violation)
{
    /* MS:VirtualFree remarks; uv:get_unix_prot. The fault goes to the previous handler. */
    pa_process_t *p = vm_new(0, 0);
    watch_exceptions();
    char *r = vm_alloc(p, 2 * PAGE, MEM_RESERVE, RW);
    VM_EXPECT_AV(vm_load(r), r);
    VM_EXPECT_AV(vm_store(r + PAGE + 5, 1), r + PAGE + 5);
    uintptr_t fault = 0;
    char buf[4];
    CHECK_EQ(pa_mm_read(p, r + 3, buf, 1, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, r + 3);
    CHECK_EQ(ex.n, 0); /* an access violation is not a guard-page exception */
    unwatch_exceptions();
    vm_release(p, r);
    VM_END(p);
}

TEST(access_violations_on_noaccess_readonly_decommitted_freed_and_tail_pages)
{
    pa_process_t *p = vm_new(0, 0);
    watch_exceptions();
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    DWORD old;
    a[0] = 1;
    CHECK(pa_virtual_protect(p, a, PAGE, NA, &old, APP));
    VM_EXPECT_AV(vm_load(a + 8), a + 8);
    CHECK(pa_virtual_protect(p, a + PAGE, PAGE, RO, &old, APP));
    CHECK_EQ(vm_load(a + PAGE), 0);
    VM_EXPECT_AV(vm_store(a + PAGE, 1), a + PAGE);
    CHECK_EQ(vm_load(a + PAGE), 0);
    CHECK(pa_virtual_free(p, a + 2 * PAGE, PAGE, MEM_DECOMMIT, APP));
    VM_EXPECT_AV(vm_load(a + 2 * PAGE), a + 2 * PAGE);
    /* The unusable tail of the slot and the never-usable null slot. */
    VM_EXPECT_AV(vm_load(a + 4 * PAGE), a + 4 * PAGE);
    char *null_slot = (char *)pa_process_min_address(p) - SLOT;
    VM_EXPECT_AV(vm_load(null_slot + 16), null_slot + 16);
    /* Execute-read pages can be read but not written. */
    CHECK(pa_virtual_protect(p, a + 3 * PAGE, PAGE, PAGE_EXECUTE_READ, &old, APP));
    CHECK_EQ(vm_load(a + 3 * PAGE), 0);
    VM_EXPECT_AV(vm_store(a + 3 * PAGE, 1), a + 3 * PAGE);
    vm_release(p, a);
    VM_EXPECT_AV(vm_load(a + PAGE), a + PAGE);
    CHECK_EQ(ex.n, 0);
    unwatch_exceptions();
    VM_END(p);
}

TEST(executing_non_executable_memory_is_an_access_violation)
{
    /* memory-protection-constants: with DEP, running code in a page without PAGE_EXECUTE* raises
     * an access violation (ExceptionInformation[0] = 8, reference section 2); it used to make the
     * fault handler retry forever. The code is one x86-64 `ret`. */
#if defined(__x86_64__)
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    a[0] = (char)0xC3;
    a[PAGE] = (char)0xC3;
    void (*fn)(void), (*fn2)(void);
    char *second = a + PAGE;
    memcpy(&fn, &a, sizeof fn);
    memcpy(&fn2, &second, sizeof fn2);
    watch_exceptions();
    VM_EXPECT_AV(fn(), a);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, PAGE, RO, &old, APP));
    VM_EXPECT_AV(fn(), a);
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READ, &old, APP));
    fn();
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READWRITE, &old, APP));
    fn();
    CHECK_EQ(ex.n, 0);
    /* A guard page raises once, then the code runs, or faults if it may not run. */
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READ | PAGE_GUARD, &old, APP));
    fn();
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(ex.addr, a);
    CHECK_EQ(ex.write, 0);
    CHECK(pa_virtual_protect(p, second, PAGE, RW | PAGE_GUARD, &old, APP));
    VM_EXPECT_AV(fn2(), second);
    CHECK_EQ(ex.n, 2);
    CHECK_EQ(ex.addr, second);
    /* An instruction fetch is not a write: it does not mark a write-watched page. */
    char *w = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_EXECUTE_READWRITE);
    CHECK_EQ(pa_reset_write_watch(p, w, PAGE), 0);
    CHECK(pa_virtual_protect(p, w, PAGE, RW, &old, APP));
    void (*fnw)(void);
    memcpy(&fnw, &w, sizeof fnw);
    VM_EXPECT_AV(fnw(), w);
    void *addr[1];
    ULONG_PTR count = 1;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, w, PAGE, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    unwatch_exceptions();
    vm_release(p, w);
    vm_release(p, a);
    VM_END(p);
#endif
}

/* ---- 1.9 guard pages -------------------------------------------------------------------------- */

TEST(fact69_guard_page_query)
{
    /* k32:test_guard_page, through the Windows names. */
    char *a = VirtualAlloc(NULL, 0x1000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD);
    CHECK(a != NULL);
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(VirtualQuery(a, &m, sizeof m), sizeof m);
    CHECK_EQ(m.Protect, 0x104);
    CHECK_EQ(m.AllocationProtect, 0x104);
    CHECK_EQ(m.RegionSize, 0x1000);
    CHECK_EQ(m.State, MEM_COMMIT);
    CHECK_EQ(m.Type, MEM_PRIVATE);
    CHECK(VirtualFree(a, 0, MEM_RELEASE));
}

TEST(fact70_protect_guard_page_old_values)
{
    /* k32:test_guard_page */
    char *a = VirtualAlloc(NULL, 0x1000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD);
    CHECK(a != NULL);
    DWORD old = 0;
    CHECK(VirtualProtect(a, 0x1000, PAGE_READWRITE, &old));
    CHECK_EQ(old, 0x104);
    CHECK(VirtualProtect(a, 0x1000, PAGE_READWRITE | PAGE_GUARD, &old));
    CHECK_EQ(old, 0x04);
    CHECK(VirtualFree(a, 0, MEM_RELEASE));
}

TEST(fact71_guard_page_load_raises_once_then_succeeds)
{
    /* k32:test_guard_page; creating-guard-pages; uv:virtual_handle_fault. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW | PAGE_GUARD);
    watch_exceptions();
    unsigned char v = vm_load(a + 0x10);
    CHECK_EQ(v, 0);
    CHECK_EQ(ex.n, 1);
    CHECK(ex.p == p);
    CHECK_EQ(ex.code, STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(ex.write, 0);
    CHECK_EQ(ex.addr, a + 0x10);
    CHECK_EQ(ex.protect_seen, RW); /* the guard was cleared before the handler ran */
    CHECK_VQ(p, a, a, a, RW | PAGE_GUARD, PAGE, MEM_COMMIT, RW, MEM_PRIVATE);
    CHECK_EQ(vm_load(a + 0x11), 0);
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(vm_stats(p).guard_hits, 1);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

TEST(fact71_guard_page_store_raises_once_then_the_store_happens)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, PAGE, RW | PAGE_GUARD, &old, APP));
    CHECK_EQ(old, RW);
    watch_exceptions();
    vm_store(a + 0x20, 9);
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(ex.code, STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(ex.write, WRITE_FLAG);
    CHECK_EQ(ex.addr, a + 0x20);
    CHECK_EQ(vm_load(a + 0x20), 9);
    CHECK_VQ(p, a, a, a, RW, PAGE, MEM_COMMIT, RW, MEM_PRIVATE);
    vm_store(a + 0x21, 1);
    CHECK_EQ(ex.n, 1);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

TEST(fact71_store_to_a_readonly_guard_page_raises_then_faults)
{
    /* The guard exception comes first; the retried store then violates READONLY. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RO | PAGE_GUARD);
    watch_exceptions();
    VM_EXPECT_AV(vm_store(a + 4, 1), a + 4);
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(ex.addr, a + 4);
    CHECK_EQ(vm_load(a + 4), 0);
    CHECK_EQ(ex.n, 1);
    CHECK_VQ(p, a, a, a, RO | PAGE_GUARD, PAGE, MEM_COMMIT, RO, MEM_PRIVATE);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

TEST(fact71_only_the_touched_guard_page_loses_its_guard)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW | PAGE_GUARD);
    watch_exceptions();
    vm_store(a + 2 * PAGE + 7, 1);
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(ex.addr, a + 2 * PAGE + 7);
    CHECK_REGION(p, a, a, RW | PAGE_GUARD, 2 * PAGE, MEM_COMMIT, RW | PAGE_GUARD);
    CHECK_REGION(p, a + 2 * PAGE, a, RW | PAGE_GUARD, PAGE, MEM_COMMIT, RW);
    CHECK_REGION(p, a + 3 * PAGE, a, RW | PAGE_GUARD, PAGE, MEM_COMMIT, RW | PAGE_GUARD);
    /* Each guard page raises once. */
    for (int i = 0; i < 4; i++) vm_load(a + i * PAGE);
    CHECK_EQ(ex.n, 4);
    CHECK_REGION(p, a, a, RW | PAGE_GUARD, 4 * PAGE, MEM_COMMIT, RW);
    CHECK_EQ(vm_stats(p).guard_hits, 4);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

TEST(fact71_guard_exception_without_a_handler_still_clears_the_guard)
{
    /* No handler installed: the access is retried as if the handler continued execution. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW | PAGE_GUARD);
    pa_set_exception_handler(NULL);
    vm_store(a, 5);
    CHECK_EQ(vm_load(a), 5);
    CHECK_EQ(vm_query(p, a).Protect, RW);
    CHECK_EQ(vm_stats(p).guard_hits, 1);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact72_guard_page_in_a_checked_copy_fails_once)
{
    /* k32:test_guard_page (VirtualLock: the call fails with the status, then succeeds, data
     * intact); creating-guard-pages. No exception reaches the handler. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    memset(a, 0x42, 2 * PAGE);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, 2 * PAGE, RW | PAGE_GUARD, &old, APP));
    watch_exceptions();
    char buf[16];
    memset(buf, 0xEE, sizeof buf);
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_read(p, a + 8, buf, sizeof buf, &fault), STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(fault, a + 8);
    CHECK(all_ee(buf));
    CHECK_EQ(pa_mm_read(p, a + 8, buf, sizeof buf, &fault), STATUS_SUCCESS);
    CHECK_EQ(buf[0], 0x42);
    CHECK_EQ(buf[15], 0x42);
    /* Writes and pins behave alike on the second page. */
    CHECK_EQ(pa_mm_write(p, a + PAGE, "xy", 2, &fault), STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(fault, a + PAGE);
    CHECK_EQ(a[PAGE], 0x42);
    CHECK_EQ(pa_mm_write(p, a + PAGE, "xy", 2, &fault), STATUS_SUCCESS);
    CHECK_EQ(a[PAGE], 'x');
    CHECK_EQ(ex.n, 0);
    CHECK_EQ(vm_stats(p).guard_hits, 2);
    CHECK_REGION(p, a, a, RW, 2 * PAGE, MEM_COMMIT, RW);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

TEST(fact73_guard_and_write_watch_one_exception_one_written_page)
{
    /* k32:test_guard_page */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW | PAGE_GUARD);
    watch_exceptions();
    vm_store(a + 3 * PAGE, 1);
    CHECK_EQ(ex.n, 1);
    CHECK_EQ(ex.addr, a + 3 * PAGE);
    CHECK_EQ(vm_load(a + 3 * PAGE), 1);
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 3 * PAGE);
    /* A read that trips a guard does not count as a write. */
    CHECK_EQ(vm_load(a + 5 * PAGE), 0);
    CHECK_EQ(ex.n, 2);
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    unwatch_exceptions();
    vm_release(p, a);
    VM_END(p);
}

/* ---- 1.10 fact 82: writes by the system count as writes ------------------------------------- */

TEST(fact82_checked_writes_mark_watched_pages_failed_ones_do_not)
{
    /* k32:test_write_watch: ReadFile into a watched buffer marks it; a failed one does not. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_WRITE_WATCH, RW);
    CHECK_EQ(pa_virtual_alloc(p, a, 8 * PAGE, MEM_COMMIT, RW, APP), a);
    char data[2 * PAGE];
    memset(data, 3, sizeof data);
    uintptr_t fault = 0;
    /* Pages 7 and 8: page 8 is reserved, so nothing is written or marked. */
    CHECK_EQ(pa_mm_write(p, a + 7 * PAGE + 10, data, PAGE, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + 8 * PAGE);
    CHECK_EQ(a[7 * PAGE + 10], 0);
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    /* Pages 2 and 3. */
    CHECK_EQ(pa_mm_write(p, a + 2 * PAGE + 10, data, PAGE, &fault), STATUS_SUCCESS);
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 2);
    CHECK_EQ(addr[0], a + 2 * PAGE);
    CHECK_EQ(addr[1], a + 3 * PAGE);
    /* The host already lets the page be written: a direct store faults no more. */
    uint64_t faults = vm_stats(p).watch_faults;
    vm_store(a + 2 * PAGE, 1);
    CHECK_EQ(vm_stats(p).watch_faults, faults);
    /* Reads mark nothing. */
    CHECK_EQ(pa_mm_read(p, a + 5 * PAGE, data, 16, &fault), STATUS_SUCCESS);
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 2);
    vm_release(p, a);
    VM_END(p);
}

/* ---- checked copies ------------------------------------------------------------------------- */

TEST(mm_read_write_are_all_or_nothing_with_the_first_faulting_address)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE, RW);
    CHECK_EQ(pa_virtual_alloc(p, a, 2 * PAGE, MEM_COMMIT, RW, APP), a);
    memset(a, 0x11, 2 * PAGE);
    char buf[2 * PAGE];
    uintptr_t fault = 0;
    /* Crossing from committed into reserved: fails at the reserved page, copies nothing. */
    memset(buf, 0xEE, sizeof buf);
    CHECK_EQ(pa_mm_read(p, a + PAGE + 100, buf, PAGE, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + 2 * PAGE);
    CHECK((unsigned char)buf[0] == 0xEE);
    /* Starting in the middle of a bad page: the fault is the start itself. */
    CHECK_EQ(pa_mm_read(p, a + 3 * PAGE + 5, buf, 1, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + 3 * PAGE + 5);
    CHECK_EQ(pa_mm_read(p, a + 100, buf, PAGE, &fault), STATUS_SUCCESS);
    CHECK((unsigned char)buf[0] == 0x11 && (unsigned char)buf[PAGE - 1] == 0x11);
    /* A write whose second page is read-only changes nothing on the first. */
    DWORD old;
    CHECK(pa_virtual_protect(p, a + PAGE, PAGE, RO, &old, APP));
    memset(buf, 0x22, sizeof buf);
    CHECK_EQ(pa_mm_write(p, a + PAGE - 10, buf, 20, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + PAGE);
    CHECK_EQ(a[PAGE - 10], 0x11);
    CHECK_EQ(pa_mm_read(p, a + PAGE - 10, buf, 20, &fault), STATUS_SUCCESS); /* RO reads */
    /* NOACCESS, EXECUTE_READ and EXECUTE_READWRITE. */
    CHECK(pa_virtual_protect(p, a, PAGE, NA, &old, APP));
    CHECK_EQ(pa_mm_read(p, a + 1, buf, 1, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + 1);
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READ, &old, APP));
    CHECK_EQ(pa_mm_read(p, a + 1, buf, 1, &fault), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_write(p, a + 1, buf, 1, &fault), STATUS_ACCESS_VIOLATION);
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READWRITE, &old, APP));
    CHECK_EQ(pa_mm_write(p, a + 1, "z", 1, &fault), STATUS_SUCCESS);
    CHECK_EQ(a[1], 'z');
    /* Outside the process, and size 0 anywhere. */
    char local = 0;
    CHECK_EQ(pa_mm_read(p, &local, buf, 1, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, (uintptr_t)&local);
    CHECK_EQ(pa_mm_read(p, NULL, buf, 0, &fault), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_write(p, NULL, buf, 0, NULL), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_read(p, a + 3 * PAGE, buf, 1, NULL), STATUS_ACCESS_VIOLATION); /* no fault ptr */
    vm_release(p, a);
    VM_END(p);
}

TEST(mm_read_meets_pages_in_address_order)
{
    /* A guard page before a bad page: the guard is reported first and cleared; the next try
     * reports the bad page. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE, RW);
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW | PAGE_GUARD, APP), a);
    char buf[2 * PAGE];
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_read(p, a, buf, 2 * PAGE, &fault), STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(fault, a);
    CHECK_EQ(pa_mm_read(p, a, buf, 2 * PAGE, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + PAGE);
    CHECK_EQ(vm_stats(p).guard_hits, 1);
    vm_release(p, a);
    VM_END(p);
}

TEST(mm_read_past_the_end_of_the_space_faults_at_the_first_bad_address)
{
    /* The contract (pyalloc.h): *fault is the first address that faulted. Past the top usable
     * slot comes the never-usable top slot, then the end of the simulated space. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    char *top = (char *)pa_process_max_address(p) + 1 - SLOT;
    CHECK_EQ(pa_virtual_alloc(p, top, SLOT, MEM_RESERVE | MEM_COMMIT, RW, APP), top);
    static char big[2 * SLOT];
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_read(p, top + SLOT - 8, big, 16, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, top + SLOT);
    CHECK_EQ(pa_mm_read(p, top + SLOT - 8, big, 2 * SLOT, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, top + SLOT);
    CHECK_EQ(pa_mm_write(p, top, big, SIZE_MAX - 8, &fault), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, top + SLOT);
    /* In address order: a guard page on the way is met first. */
    DWORD old;
    CHECK(pa_virtual_protect(p, top + SLOT - PAGE, PAGE, RW | PAGE_GUARD, &old, APP));
    CHECK_EQ(pa_mm_read(p, top + SLOT - 8, big, 2 * SLOT, &fault), STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(fault, top + SLOT - 8);
    vm_release(p, top);
    VM_END(p);
}

/* ---- pins ----------------------------------------------------------------------------------- */

TEST(pin_blocks_free_decommit_and_protection_downgrades)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    pa_pin_t *pin = NULL;
    int writable = -1;
    uintptr_t fault;
    /* Bytes PAGE-1 and PAGE: pages 0 and 1 are pinned, writable. */
    CHECK_EQ(pa_mm_pin(p, a + PAGE - 1, 2, 1, &writable, &fault, &pin), STATUS_SUCCESS);
    CHECK(pin != NULL);
    CHECK_EQ(writable, 1);
    CHECK_EQ(vm_stats(p).pins, 1);
    DWORD old = 0x77;
    CHECK_FAILS(pa_virtual_free(p, a, 0, MEM_RELEASE, APP), PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, PAGE, MEM_DECOMMIT, APP), PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, RO, &old, APP), PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_protect(p, a + PAGE, PAGE, NA, &old, APP), PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_protect(p, a, 2 * PAGE, RW | PAGE_GUARD, &old, APP),
                PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READ, &old, APP),
                PA_ERROR_BUFFER_EXPORTED);
    CHECK_FAILS(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RO, APP), PA_ERROR_BUFFER_EXPORTED);
    CHECK_EQ(old, 0x77);
    void *base = a;
    size_t size = 0;
    CHECK_EQ(pa_nt_free_virtual_memory(p, &base, &size, MEM_RELEASE, APP),
             PA_STATUS_BUFFER_EXPORTED);
    CHECK_EQ(pa_process_destroy(p), PA_STATUS_BUFFER_EXPORTED);
    CHECK_REGION(p, a, a, RW, 4 * PAGE, MEM_COMMIT, RW);
    /* What keeps the access is allowed, and so is anything outside the pin. */
    CHECK(pa_virtual_protect(p, a, 2 * PAGE, PAGE_EXECUTE_READWRITE, &old, APP));
    CHECK_EQ(old, RW);
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW, APP), a);
    CHECK(pa_virtual_free(p, a + 2 * PAGE, PAGE, MEM_DECOMMIT, APP));
    CHECK(pa_virtual_protect(p, a + 3 * PAGE, PAGE, NA, &old, APP));
    pa_mm_unpin(p, pin);
    CHECK_EQ(vm_stats(p).pins, 0);
    CHECK(pa_virtual_protect(p, a, PAGE, NA, &old, APP));
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, APP));
    VM_END(p);
}

TEST(read_only_pins_allow_read_only_downgrades)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    pa_pin_t *pin1 = NULL, *pin2 = NULL;
    int writable = -1;
    uintptr_t fault;
    CHECK_EQ(pa_mm_pin(p, a, PAGE, 0, &writable, &fault, &pin1), STATUS_SUCCESS);
    CHECK_EQ(writable, 0);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, PAGE, RO, &old, APP));
    CHECK(pa_virtual_protect(p, a, PAGE, PAGE_EXECUTE_READ, &old, APP));
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, NA, &old, APP), PA_ERROR_BUFFER_EXPORTED);
    /* Asking for write access to read-only pages gets a read-only pin. */
    CHECK_EQ(pa_mm_pin(p, a, 2 * PAGE, 1, &writable, &fault, &pin2), STATUS_SUCCESS);
    CHECK_EQ(writable, 0);
    CHECK_EQ(vm_stats(p).pins, 2);
    pa_mm_unpin(p, pin1);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, NA, &old, APP), PA_ERROR_BUFFER_EXPORTED);
    pa_mm_unpin(p, pin2);
    CHECK(pa_virtual_protect(p, a, PAGE, NA, &old, APP));
    vm_release(p, a);
    VM_END(p);
}

TEST(pin_fails_like_a_read_and_clears_a_guard_once)
{
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE, RW);
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW | PAGE_GUARD, APP), a);
    pa_pin_t *pin = NULL;
    int writable = -1;
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_pin(p, a + PAGE, 1, 0, &writable, &fault, &pin), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(fault, a + PAGE);
    CHECK_EQ(pa_mm_pin(p, a + 4, 8, 1, &writable, &fault, &pin), STATUS_GUARD_PAGE_VIOLATION);
    CHECK_EQ(fault, a + 4);
    CHECK_EQ(vm_stats(p).pins, 0);
    CHECK_EQ(pa_mm_pin(p, a + 4, 8, 1, &writable, &fault, &pin), STATUS_SUCCESS);
    CHECK_EQ(writable, 1);
    pa_mm_unpin(p, pin);
    /* An empty pin blocks nothing. */
    CHECK_EQ(pa_mm_pin(p, a, 0, 1, &writable, &fault, &pin), STATUS_SUCCESS);
    CHECK(pa_virtual_free(p, a, PAGE, MEM_DECOMMIT, APP));
    pa_mm_unpin(p, pin);
    vm_release(p, a);
    VM_END(p);
}

/* ---- owners --------------------------------------------------------------------------------- */

TEST(owner_checks_protect_another_layers_memory)
{
    pa_process_t *p = vm_new(0, 0);
    char *h = pa_virtual_alloc(p, NULL, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW, HEAP);
    CHECK(h != NULL);
    h[0] = 9;
    DWORD old = 0x77;
    CHECK_FAILS(pa_virtual_free(p, h, 0, MEM_RELEASE, APP), ERROR_ACCESS_DENIED);
    CHECK_FAILS(pa_virtual_free(p, h, PAGE, MEM_DECOMMIT, APP), ERROR_ACCESS_DENIED);
    CHECK_FAILS(pa_virtual_protect(p, h, PAGE, RO, &old, APP), ERROR_ACCESS_DENIED);
    CHECK_FAILS(pa_virtual_alloc(p, h, PAGE, MEM_COMMIT, RO, APP), ERROR_ACCESS_DENIED);
    CHECK_FAILS(pa_virtual_alloc(p, h, PAGE, MEM_RESET, RW, APP), ERROR_ACCESS_DENIED);
    void *base = h;
    size_t size = 0;
    CHECK_EQ(pa_nt_free_virtual_memory(p, &base, &size, MEM_RELEASE, APP), PA_STATUS_OWNED);
    CHECK_EQ(old, 0x77);
    CHECK_EQ(h[0], 9);
    CHECK_REGION(p, h, h, RW, 4 * PAGE, MEM_COMMIT, RW); /* anyone may look */
    /* The owner, and PA_OWNER_ANY, may. */
    CHECK(pa_virtual_protect(p, h, PAGE, RO, &old, HEAP));
    CHECK(pa_virtual_protect(p, h + PAGE, PAGE, RO, &old, ANY));
    CHECK(pa_virtual_free(p, h + 2 * PAGE, PAGE, MEM_DECOMMIT, HEAP));
    CHECK_EQ(pa_virtual_alloc(p, h + 2 * PAGE, PAGE, MEM_COMMIT, RW, HEAP), h + 2 * PAGE);
    CHECK(pa_virtual_free(p, h + 3 * PAGE, PAGE, MEM_DECOMMIT, ANY));
    /* The other way round. */
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_free(p, a, 0, MEM_RELEASE, HEAP), ERROR_ACCESS_DENIED);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, RO, &old, HEAP), ERROR_ACCESS_DENIED);
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, ANY));
    CHECK(pa_virtual_free(p, h, 0, MEM_RELEASE, HEAP));
    CHECK_EQ(vm_stats(p).allocations, 0);
    VM_END(p);
}

/* ---- the walk ------------------------------------------------------------------------------- */

typedef struct {
    int n, stop_after;
    pa_region_info_t r[32];
} walk_t;

static int collect(const pa_region_info_t *r, void *arg)
{
    walk_t *w = arg;
    if (w->n < 32) w->r[w->n] = *r;
    w->n++;
    return w->stop_after && w->n == w->stop_after ? 7 : 0;
}

#define CHECK_WALK(w, i, base, size, state, prot, abase, owner_, unusable_)                      \
    do {                                                                                         \
        const pa_region_info_t *cw_r = &(w).r[i];                                                \
        CHECK_EQ(cw_r->mbi.BaseAddress, (uintptr_t)(base));                                      \
        CHECK_EQ(cw_r->mbi.RegionSize, (size));                                                  \
        CHECK_EQ(cw_r->mbi.State, (state));                                                      \
        CHECK_EQ(cw_r->mbi.Protect, (prot));                                                     \
        CHECK_EQ(cw_r->mbi.AllocationBase, (uintptr_t)(abase));                                  \
        CHECK_EQ(cw_r->owner, (owner_));                                                         \
        CHECK_EQ(cw_r->unusable, (unusable_));                                                   \
    } while (0)

TEST(walk_reports_free_unusable_reserved_and_committed_regions)
{
    pa_process_t *p = vm_new(1 * MiB, 0);
    char *lo = (char *)pa_process_min_address(p);
    char *end = (char *)pa_process_max_address(p) + 1;
    walk_t w = {0};
    CHECK_EQ(pa_process_walk(p, collect, &w), 0);
    CHECK_EQ(w.n, 1);
    CHECK_WALK(w, 0, lo, (size_t)(end - lo), MEM_FREE, NA, 0, 0, 0);

    CHECK_EQ(pa_virtual_alloc(p, lo, 0x11000, MEM_RESERVE, RW, APP), lo);
    CHECK_EQ(pa_virtual_alloc(p, lo, PAGE, MEM_COMMIT, RW, APP), lo);
    CHECK_EQ(pa_virtual_alloc(p, lo + 4 * SLOT, SLOT, MEM_RESERVE | MEM_COMMIT, RO, APP),
             lo + 4 * SLOT);
    char *top = pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_TOP_DOWN, NA, HEAP);
    CHECK_EQ(top, end - SLOT);
    memset(&w, 0, sizeof w);
    CHECK_EQ(pa_process_walk(p, collect, &w), 0);
    CHECK_EQ(w.n, 8);
    CHECK_WALK(w, 0, lo, PAGE, MEM_COMMIT, RW, lo, APP, 0);
    CHECK_WALK(w, 1, lo + PAGE, SLOT, MEM_RESERVE, 0, lo, APP, 0);
    CHECK_WALK(w, 2, lo + 0x11000, 0xF000, MEM_FREE, NA, 0, 0, 1);
    CHECK_WALK(w, 3, lo + 2 * SLOT, 2 * SLOT, MEM_FREE, NA, 0, 0, 0);
    CHECK_WALK(w, 4, lo + 4 * SLOT, SLOT, MEM_COMMIT, RO, lo + 4 * SLOT, APP, 0);
    CHECK_WALK(w, 5, lo + 5 * SLOT, 8 * SLOT, MEM_FREE, NA, 0, 0, 0);
    CHECK_WALK(w, 6, top, PAGE, MEM_RESERVE, 0, top, HEAP, 0);
    CHECK_WALK(w, 7, top + PAGE, SLOT - PAGE, MEM_FREE, NA, 0, 0, 1);
    /* Contiguous, covering [min, max], and in agreement with VirtualQuery. */
    uintptr_t at = (uintptr_t)lo;
    for (int i = 0; i < w.n && i < 32; i++) {
        CHECK_EQ(w.r[i].mbi.BaseAddress, at);
        at += w.r[i].mbi.RegionSize;
        MEMORY_BASIC_INFORMATION m = vm_query(p, w.r[i].mbi.BaseAddress);
        CHECK_EQ(m.State, w.r[i].mbi.State);
        CHECK_EQ(m.Protect, w.r[i].mbi.Protect);
        CHECK_EQ(m.AllocationBase, w.r[i].mbi.AllocationBase);
        CHECK_EQ(m.AllocationProtect, w.r[i].mbi.AllocationProtect);
        CHECK_EQ(m.Type, w.r[i].mbi.Type);
        if (!w.r[i].unusable) CHECK_EQ(m.RegionSize, w.r[i].mbi.RegionSize);
    }
    CHECK_EQ(at, (uintptr_t)end);
    /* fn's non-zero result stops the walk and is returned. */
    memset(&w, 0, sizeof w);
    w.stop_after = 2;
    CHECK_EQ(pa_process_walk(p, collect, &w), 7);
    CHECK_EQ(w.n, 2);
    vm_release(p, lo);
    vm_release(p, lo + 4 * SLOT);
    CHECK(pa_virtual_free(p, top, 0, MEM_RELEASE, HEAP));
    VM_END(p);
}

/* ---- statistics ----------------------------------------------------------------------------- */

TEST(stats_account_reserve_commit_decommit_release)
{
    pa_process_t *p = vm_new(0, 0);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.reserved, 0);
    CHECK_EQ(s.committed, 0);
    CHECK_EQ(s.peak_committed, 0);
    CHECK_EQ(s.commit_limit, 0);
    CHECK_EQ(s.allocations, 0);
    CHECK_EQ(s.pins, 0);
    CHECK_EQ(s.guard_hits, 0);
    CHECK_EQ(s.watch_faults, 0);
    char *a = vm_alloc(p, 0x11000, MEM_RESERVE, RW);
    s = vm_stats(p);
    CHECK_EQ(s.reserved, 0x11000);
    CHECK_EQ(s.committed, 0);
    CHECK_EQ(s.allocations, 1);
    CHECK_EQ(pa_virtual_alloc(p, a, 3 * PAGE, MEM_COMMIT, RW, APP), a);
    CHECK_EQ(pa_virtual_alloc(p, a, 3 * PAGE, MEM_COMMIT, RO, APP), a); /* no new charge */
    CHECK_EQ(pa_virtual_alloc(p, a + 2 * PAGE, 2 * PAGE, MEM_COMMIT, RW, APP), a + 2 * PAGE);
    s = vm_stats(p);
    CHECK_EQ(s.committed, 4 * PAGE);
    CHECK_EQ(s.peak_committed, 4 * PAGE);
    CHECK(pa_virtual_free(p, a + PAGE, 2 * PAGE, MEM_DECOMMIT, APP));
    CHECK(pa_virtual_free(p, a + PAGE, 2 * PAGE, MEM_DECOMMIT, APP)); /* already decommitted */
    s = vm_stats(p);
    CHECK_EQ(s.committed, 2 * PAGE);
    CHECK_EQ(s.peak_committed, 4 * PAGE);
    char *b = vm_alloc(p, 0x2000, MEM_RESERVE | MEM_COMMIT, RW);
    s = vm_stats(p);
    CHECK_EQ(s.reserved, 0x13000);
    CHECK_EQ(s.committed, 4 * PAGE);
    CHECK_EQ(s.allocations, 2);
    /* Failures change nothing. */
    CHECK_FAILS(pa_virtual_alloc(p, a + 0x11000, PAGE, MEM_COMMIT, RW, APP),
                ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, 0, APP), ERROR_INVALID_PARAMETER);
    s = vm_stats(p);
    CHECK_EQ(s.committed, 4 * PAGE);
    CHECK_EQ(s.allocations, 2);
    vm_release(p, a);
    s = vm_stats(p);
    CHECK_EQ(s.reserved, 0x2000);
    CHECK_EQ(s.committed, 2 * PAGE);
    vm_release(p, b);
    s = vm_stats(p);
    CHECK_EQ(s.reserved, 0);
    CHECK_EQ(s.committed, 0);
    CHECK_EQ(s.allocations, 0);
    CHECK_EQ(s.peak_committed, 4 * PAGE);
    VM_END(p);
}

/* Commit and decommit compare and set page states four at a time; a range of 1027 pages has
 * a tail of three past the last word. One page that differs, in the words or in the tail,
 * must still be charged, protected and dropped on its own. */
TEST(long_commits_and_decommits_treat_each_page_by_its_own_state)
{
    pa_process_t *p = vm_new(0, 0);
    const size_t n = 1027;
    char *a = vm_alloc(p, n * PAGE, MEM_RESERVE, RW);
    size_t odd[] = {1025, 513, 0, n - 1};
    for (size_t k = 0; k < sizeof odd / sizeof *odd; k++) {
        char *x = a + odd[k] * PAGE;
        /* One page committed READONLY, then the whole range READWRITE: one new page fewer. */
        CHECK_EQ(pa_virtual_alloc(p, x, PAGE, MEM_COMMIT, RO, APP), x);
        CHECK_EQ(vm_stats(p).committed, PAGE);
        CHECK_EQ(pa_virtual_alloc(p, a, n * PAGE, MEM_COMMIT, RW, APP), a);
        CHECK_EQ(vm_stats(p).committed, n * PAGE);
        CHECK_REGION(p, a, a, RW, n * PAGE, MEM_COMMIT, RW);
        vm_store(x, 7);
        vm_store(a + n * PAGE - 1, 9);
        /* Re-protecting committed pages charges nothing. */
        CHECK_EQ(pa_virtual_alloc(p, a, n * PAGE, MEM_COMMIT, RO, APP), a);
        CHECK_EQ(vm_stats(p).committed, n * PAGE);
        CHECK_EQ(vm_load(x), 7);
        VM_EXPECT_AV(vm_store(x, 1), x);
        /* One page decommitted, then the whole range: only the others are dropped. */
        CHECK(pa_virtual_free(p, x, PAGE, MEM_DECOMMIT, APP));
        CHECK_EQ(vm_stats(p).committed, (n - 1) * PAGE);
        CHECK(pa_virtual_free(p, a, n * PAGE, MEM_DECOMMIT, APP));
        CHECK_EQ(vm_stats(p).committed, 0);
        CHECK_REGION(p, a, a, RW, n * PAGE, MEM_RESERVE, 0);
        /* Committed again, the pages are zero. */
        CHECK_EQ(pa_virtual_alloc(p, a, n * PAGE, MEM_COMMIT, RW, APP), a);
        CHECK_EQ(vm_load(x) + vm_load(a + n * PAGE - 1), 0);
        CHECK(pa_virtual_free(p, a, n * PAGE, MEM_DECOMMIT, APP));
    }
    vm_release(p, a);
    CHECK_EQ(vm_stats(p).reserved, 0);
    VM_END(p);
}

/* ---- processes ------------------------------------------------------------------------------ */

TEST(process_create_rejects_bad_sizes_and_destroy_checks_its_argument)
{
    static const size_t bad[] = {2 * SLOT, 3 * SLOT + PAGE, SLOT, (size_t)1 << 47};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pa_process_options_t o = {bad[i], 0};
        NTSTATUS st = 0;
        CHECK(pa_process_create(&o, &st) == NULL);
        CHECK_EQ(st, STATUS_INVALID_PARAMETER);
    }
    pa_process_t *p = vm_new(3 * SLOT, 0); /* the smallest: one usable slot */
    char *a = vm_alloc(p, SLOT, MEM_RESERVE, RW);
    CHECK_EQ(a, pa_process_min_address(p));
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE, RW, APP), ERROR_NOT_ENOUGH_MEMORY);
    vm_release(p, a);
    VM_END(p);
    CHECK_EQ(pa_process_destroy(NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(pa_process_destroy(pa_process_current()), STATUS_ACCESS_DENIED);
    CHECK(pa_process_current() == pa_process_current());
}

TEST(processes_are_independent_address_spaces)
{
    pa_process_t *p = vm_new(1 * MiB, 0), *q = vm_new(1 * MiB, 0);
    CHECK(pa_process_min_address(p) != pa_process_min_address(q));
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    char *b = vm_alloc(q, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    a[0] = 1;
    b[0] = 2;
    CHECK_EQ(vm_stats(p).allocations, 1);
    CHECK_EQ(vm_stats(q).allocations, 1);
    /* p's allocation is not q's to free. */
    CHECK(!pa_virtual_free(q, a, 0, MEM_RELEASE, APP));
    CHECK_EQ(a[0], 1);
    /* Destroying a process with live allocations unmaps them; the other is untouched. */
    CHECK_EQ(pa_process_destroy(p), STATUS_SUCCESS);
    CHECK_EQ(b[0], 2);
    vm_release(q, b);
    VM_END(q);
}

CTEST_MAIN()
