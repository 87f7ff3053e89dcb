/* test_virtual.c: layer 2, the VirtualAlloc family, against sections 1.1-1.10 of
 * ../shared/reference/virtual-memory.md (private memory). Each test is named after the fact it
 * checks and cites the reference's source key.
 *
 * Covered elsewhere: facts 24, 69-73 and 82 (direct loads and stores, pa_mm_*) in test_mm.c.
 * Not applicable: 2 (32-bit processes), 3 (GetLargePageMinimum is not part of the API), 17
 * (VirtualAlloc2 is not part of the API), 35, 47, 59, 74 (views and sections), 83 (Windows is
 * inconsistent; the reference says not to pin it). Fact 46 (NT-level partial release) is a
 * documented limitation; fact46_* pins what pyalloc does instead.
 *
 * Most tests use their own process (pa_process_create), so they are independent; a few use the
 * Windows names on the current process, as a C program would.
 */
#include "vmtest.h" /* first: it sets _GNU_SOURCE */

#include <stddef.h>

#include "pyalloc/windows.h"

#define APP PA_OWNER_APP
#define RW PAGE_READWRITE
#define RO PAGE_READONLY
#define NA PAGE_NOACCESS

static int valid_private_base(DWORD prot)
{
    return prot == PAGE_NOACCESS || prot == PAGE_READONLY || prot == PAGE_READWRITE ||
           prot == PAGE_EXECUTE || prot == PAGE_EXECUTE_READ || prot == PAGE_EXECUTE_READWRITE;
}

/* ---- 1.1 GetSystemInfo ---------------------------------------------------------------------- */

TEST(fact01_system_info_page_granularity_architecture_and_limits)
{
    /* ntinfo:test_query_basic; kb:fill_system_info. The simulated space sits somewhere in the
     * host's, so the limits are the process's, shaped like Windows' 0x10000 and 0x7FFFFFFEFFFF. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    SYSTEM_INFO si;
    memset(&si, 0xA5, sizeof si);
    pa_get_system_info(p, &si);
    CHECK_EQ(si.dwPageSize, 0x1000);
    CHECK_EQ(si.dwAllocationGranularity, 0x10000);
#if defined(__x86_64__)
    CHECK_EQ(si.wProcessorArchitecture, PROCESSOR_ARCHITECTURE_AMD64);
    CHECK_EQ(si.dwProcessorType, PROCESSOR_AMD_X8664);
#endif
    uintptr_t lo = (uintptr_t)si.lpMinimumApplicationAddress;
    uintptr_t hi = (uintptr_t)si.lpMaximumApplicationAddress;
    CHECK_EQ(lo, pa_process_min_address(p));
    CHECK_EQ(hi, pa_process_max_address(p));
    CHECK_EQ(lo & 0xFFFF, 0);
    CHECK_EQ(hi & 0xFFFF, 0xFFFF);
    CHECK_EQ(hi + 1 - lo, 14 * SLOT); /* 16 slots less the null slot and the top slot */
    CHECK(si.dwNumberOfProcessors >= 1);
    if (si.dwNumberOfProcessors < 64)
        CHECK_EQ(si.dwActiveProcessorMask, ((DWORD_PTR)1 << si.dwNumberOfProcessors) - 1);
    /* The limits are real: the lowest address is handed out first, the highest slot is usable,
     * and the address past the maximum is not. */
    char *a = vm_alloc(p, PAGE, MEM_RESERVE, NA);
    CHECK_EQ(a, lo);
    char *t = vm_alloc(p, PAGE, MEM_RESERVE | MEM_TOP_DOWN, NA);
    CHECK_EQ(t, hi + 1 - SLOT);
    vm_query(p, (void *)hi);
    CHECK_FAILS(pa_virtual_query(p, (void *)(hi + 1), &(MEMORY_BASIC_INFORMATION){0},
                                 sizeof(MEMORY_BASIC_INFORMATION)),
                ERROR_INVALID_PARAMETER);
    vm_release(p, a);
    vm_release(p, t);
    VM_END(p);
}

TEST(fact01_get_system_info_on_the_current_process)
{
    /* The Windows name acts on pa_process_current() (64 GiB by default). */
    SYSTEM_INFO si;
    memset(&si, 0xA5, sizeof si);
    GetSystemInfo(&si);
    CHECK_EQ(si.dwPageSize, 0x1000);
    CHECK_EQ(si.dwAllocationGranularity, 0x10000);
    CHECK_EQ((uintptr_t)si.lpMinimumApplicationAddress,
             pa_process_min_address(pa_process_current()));
    CHECK_EQ((uintptr_t)si.lpMaximumApplicationAddress + 1 -
                 (uintptr_t)si.lpMinimumApplicationAddress,
             PA_DEFAULT_ADDRESS_SPACE - 2 * SLOT);
}

/* ---- 1.2 sizes, rounding, alignment --------------------------------------------------------- */

TEST(fact04_zero_size_fails_87_for_every_type)
{
    /* k32:test_VirtualAlloc; uv:NtAllocateVirtualMemory checks the size first. */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 0, MEM_RESERVE, NA, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 0, MEM_COMMIT, RW, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 0, MEM_RESERVE | MEM_COMMIT, RW, APP),
                ERROR_INVALID_PARAMETER);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_alloc(p, a, 0, MEM_COMMIT, RW, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, a, 0, MEM_RESET, NA, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(VirtualAlloc(NULL, 0, MEM_RESERVE, PAGE_NOACCESS), ERROR_INVALID_PARAMETER);
    CHECK_EQ(vm_stats(p).allocations, 1);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact05_reserve_fffc_rounds_to_page_protect_zero)
{
    /* k32:test_VirtualAlloc, through the Windows names. */
    char *p = VirtualAlloc(NULL, 0xFFFC, MEM_RESERVE, PAGE_NOACCESS);
    CHECK(p != NULL);
    MEMORY_BASIC_INFORMATION m;
    memset(&m, 0xA5, sizeof m);
    CHECK_EQ(VirtualQuery(p, &m, sizeof m), sizeof m);
    CHECK_EQ(m.BaseAddress, p);
    CHECK_EQ(m.AllocationBase, p);
    CHECK_EQ(m.AllocationProtect, PAGE_NOACCESS);
    CHECK_EQ(m.RegionSize, 0x10000);
    CHECK_EQ(m.State, MEM_RESERVE);
    CHECK_EQ(m.Protect, 0);
    CHECK_EQ(m.Type, MEM_PRIVATE);
    CHECK(VirtualFree(p, 0, MEM_RELEASE));
}

TEST(fact06_null_address_results_are_64k_aligned_whole_slots)
{
    /* k32:test_VirtualAlloc: every allocation starts on 64K and owns whole slots. */
    pa_process_t *p = vm_new(0, 0);
    static const size_t sizes[] = {1, 0x1000, 0x2000, 0xFFFF, 0x10000, 0x10001, 0x30000, 0x2000};
    enum { N = sizeof sizes / sizeof *sizes };
    char *a[N];
    for (int i = 0; i < N; i++) {
        a[i] = vm_alloc(p, sizes[i], MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE);
        CHECK_EQ((uintptr_t)a[i] & 0xFFFF, 0);
    }
    /* No two allocations share a 64K slot. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            if (i == j) continue;
            uintptr_t end_i = (uintptr_t)a[i] + ((sizes[i] + SLOT - 1) & ~(SLOT - 1));
            CHECK((uintptr_t)a[j] >= end_i || (uintptr_t)a[j] < (uintptr_t)a[i]);
        }
    for (int i = 0; i < N; i++) vm_release(p, a[i]);
    VM_END(p);
}

TEST(fact08_released_address_is_reused_exactly)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 0x1000, MEM_RESERVE | MEM_COMMIT, RW);
    vm_release(p, a);
    CHECK_EQ(pa_virtual_alloc(p, a, 0x1000, MEM_RESERVE | MEM_COMMIT, RW, APP), a);
    CHECK_REGION(p, a, a, RW, 0x1000, MEM_COMMIT, RW);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact09_explicit_reserve_rounds_base_down_to_64k)
{
    /* MS:VirtualAlloc; uv:allocate_virtual_memory. Size = round_up_page(addr + size) - base. */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, 4 * SLOT, MEM_RESERVE, NA); /* find free space, then give it back */
    vm_release(p, r);

    CHECK_EQ(pa_virtual_alloc(p, r + 0x1234, 0x10, MEM_RESERVE, RW, APP), r);
    CHECK_REGION(p, r, r, RW, 0x2000, MEM_RESERVE, 0);
    CHECK_EQ(vm_query(p, r + 0x2000).State, MEM_FREE);
    vm_release(p, r);

    /* Two bytes straddling a 64K boundary: 0x11000 bytes from the rounded base, two slots. */
    CHECK_EQ(pa_virtual_alloc(p, r + 0xFFFF, 2, MEM_RESERVE, RW, APP), r);
    CHECK_REGION(p, r, r, RW, 0x11000, MEM_RESERVE, 0);
    CHECK_EQ(vm_stats(p).reserved, 0x11000);
    CHECK_FAILS(pa_virtual_alloc(p, r + SLOT, PAGE, MEM_RESERVE, RW, APP), ERROR_INVALID_ADDRESS);
    vm_release(p, r);

    /* Reserve and commit together: every page from the rounded base is committed. */
    CHECK_EQ(pa_virtual_alloc(p, r + 0x3000, 0x1000, MEM_RESERVE | MEM_COMMIT, RW, APP), r);
    CHECK_REGION(p, r, r, RW, 0x4000, MEM_COMMIT, RW);
    CHECK_EQ(vm_stats(p).committed, 0x4000);
    vm_release(p, r);

    /* The NT layer reports the rounded range through its in/out arguments. */
    void *base = r + 0x1234;
    size_t size = 0x10;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_RESERVE, RW, APP),
             STATUS_SUCCESS);
    CHECK_EQ(base, r);
    CHECK_EQ(size, 0x2000);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact09_explicit_commit_rounds_to_pages_two_byte_straddle)
{
    /* MS:VirtualAlloc: without MEM_RESERVE the base rounds down to a page only. */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE, NA);
    CHECK_EQ(pa_virtual_alloc(p, r + 0x1FFF, 2, MEM_COMMIT, RW, APP), r + 0x1000);
    CHECK_REGION(p, r, r, NA, 0x1000, MEM_RESERVE, 0);
    CHECK_REGION(p, r + 0x1000, r, NA, 0x2000, MEM_COMMIT, RW);
    CHECK_REGION(p, r + 0x3000, r, NA, 0xD000, MEM_RESERVE, 0);
    CHECK_EQ(pa_virtual_alloc(p, r + 0x5001, 0x1000, MEM_COMMIT, RO, APP), r + 0x5000);
    CHECK_REGION(p, r + 0x5000, r, NA, 0x2000, MEM_COMMIT, RO);
    CHECK_EQ(vm_stats(p).committed, 0x4000);

    void *base = r + 0x8FFF;
    size_t size = 2;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_COMMIT, RW, APP), STATUS_SUCCESS);
    CHECK_EQ(base, r + 0x8000);
    CHECK_EQ(size, 0x2000);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact10_reserve_inside_existing_allocation_conflicts_487)
{
    /* nt:test_NtAllocateVirtualMemory: p+0x1000 rounds down to p, STATUS_CONFLICTING_ADDRESSES. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 0x1000, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE);
    CHECK_FAILS(pa_virtual_alloc(p, a + 0x1000, 0x1000, MEM_RESERVE, PAGE_EXECUTE_READWRITE, APP),
                ERROR_INVALID_ADDRESS);
    void *base = a + 0x1000;
    size_t size = 0x1000;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_RESERVE, RW, APP),
             STATUS_CONFLICTING_ADDRESSES);
    CHECK_EQ(base, a + 0x1000); /* outputs untouched on failure */
    CHECK_EQ(size, 0x1000);
    CHECK_REGION(p, a, a, PAGE_EXECUTE_READWRITE, 0x1000, MEM_COMMIT, PAGE_EXECUTE_READWRITE);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact11_reserve_over_any_part_of_an_allocation_conflicts_487)
{
    /* uv:map_fixed_area; MS:VirtualAlloc. The unusable tail of the last slot counts too. */
    pa_process_t *p = vm_new(0, 0);
    char *a = (char *)pa_process_min_address(p) + 2 * SLOT;
    CHECK_EQ(pa_virtual_alloc(p, a, 0x21000, MEM_RESERVE, RW, APP), a); /* 3 slots */
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW, APP), a);
    char *tries[] = {a, a + 0x18000, a + 0x21000, a + 0x2F000};
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        CHECK_FAILS(pa_virtual_alloc(p, tries[i], PAGE, MEM_RESERVE, RW, APP),
                    ERROR_INVALID_ADDRESS);
        CHECK_FAILS(pa_virtual_alloc(p, tries[i], PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP),
                    ERROR_INVALID_ADDRESS);
    }
    /* Overlapping from below. */
    CHECK_FAILS(pa_virtual_alloc(p, a - SLOT, 2 * SLOT, MEM_RESERVE, RW, APP),
                ERROR_INVALID_ADDRESS);
    CHECK_EQ(vm_query(p, a - SLOT).State, MEM_FREE);
    /* Nothing changed; the slot after the allocation is free. */
    CHECK_REGION(p, a, a, RW, 0x1000, MEM_COMMIT, RW);
    CHECK_REGION(p, a + 0x1000, a, RW, 0x20000, MEM_RESERVE, 0);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.allocations, 1);
    CHECK_EQ(s.reserved, 0x21000);
    CHECK_EQ(s.committed, 0x1000);
    char *b = pa_virtual_alloc(p, a + 0x30000, PAGE, MEM_RESERVE, RW, APP);
    CHECK_EQ(b, a + 0x30000);
    vm_release(p, b);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact12_low_wrapping_and_high_addresses_fail_87)
{
    /* uv:allocate_virtual_memory: below the lowest slot, wrap-around and past the user limit. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    uintptr_t lo = pa_process_min_address(p), hi = pa_process_max_address(p);
    void *bad[] = {(void *)(lo - 1), (void *)(lo - SLOT), (void *)0x1000, (void *)(hi + 1),
                   (void *)(hi + 1 + SLOT)};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_FAILS(pa_virtual_alloc(p, bad[i], PAGE, MEM_RESERVE, RW, APP),
                    ERROR_INVALID_PARAMETER);
        CHECK_FAILS(pa_virtual_alloc(p, bad[i], PAGE, MEM_COMMIT, RW, APP),
                    ERROR_INVALID_PARAMETER);
    }
    /* A range that starts usable but runs past the limit, and one that wraps. */
    CHECK_FAILS(pa_virtual_alloc(p, (void *)(hi + 1 - PAGE), 2 * PAGE, MEM_RESERVE, RW, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, (void *)(lo + SLOT), SIZE_MAX - PAGE, MEM_RESERVE, RW, APP),
                ERROR_INVALID_PARAMETER);
    /* The extreme usable slots work. */
    char *top = pa_virtual_alloc(p, (void *)(hi + 1 - SLOT), SLOT, MEM_RESERVE, RW, APP);
    CHECK_EQ(top, hi + 1 - SLOT);
    char *bottom = pa_virtual_alloc(p, (void *)lo, SLOT, MEM_RESERVE, RW, APP);
    CHECK_EQ(bottom, lo);
    CHECK_EQ(vm_stats(p).allocations, 2);
    vm_release(p, top);
    vm_release(p, bottom);
    VM_END(p);
}

TEST(fact13_huge_size_fails_87_and_no_free_range_fails_8)
{
    /* uv:allocate_virtual_memory (STATUS_WORKING_SET_LIMIT_RANGE, informational yet a kernel32
     * failure) and uv:map_view (STATUS_NO_MEMORY). */
    pa_process_t *p = vm_new(1 * MiB, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 14 * SLOT + 1, MEM_RESERVE, RW, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, SIZE_MAX, MEM_RESERVE, RW, APP),
                ERROR_INVALID_PARAMETER);
    void *base = NULL;
    size_t size = 14 * SLOT + 1;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_RESERVE, RW, APP),
             STATUS_WORKING_SET_LIMIT_RANGE);
    CHECK_EQ(vm_stats(p).allocations, 0);
    /* The whole space fits once; with one page taken it no longer does. */
    char *all = vm_alloc(p, 14 * SLOT, MEM_RESERVE, RW);
    vm_release(p, all);
    char *one = vm_alloc(p, PAGE, MEM_RESERVE, RW);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 14 * SLOT, MEM_RESERVE, RW, APP),
                ERROR_NOT_ENOUGH_MEMORY);
    base = NULL;
    size = 14 * SLOT;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_RESERVE, RW, APP),
             STATUS_NO_MEMORY);
    vm_release(p, one);
    VM_END(p);
}

TEST(address_space_exhaustion_in_a_16_slot_process_fails_8)
{
    /* 1 MiB = 16 slots: the null slot and the top slot are unusable, 14 remain. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    uintptr_t lo = pa_process_min_address(p);
    char *a[14];
    for (int i = 0; i < 14; i++) {
        a[i] = pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP);
        CHECK_EQ(a[i], lo + (uintptr_t)i * SLOT);
    }
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE, RW, APP), ERROR_NOT_ENOUGH_MEMORY);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_TOP_DOWN, RW, APP),
                ERROR_NOT_ENOUGH_MEMORY);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, RW, APP), ERROR_NOT_ENOUGH_MEMORY);
    /* Explicit addresses are taken: a conflict, not exhaustion. */
    CHECK_FAILS(pa_virtual_alloc(p, a[3] + PAGE, PAGE, MEM_RESERVE, RW, APP),
                ERROR_INVALID_ADDRESS);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.allocations, 14);
    CHECK_EQ(s.committed, 14 * PAGE);
    /* One-slot holes do not hold a two-slot allocation; a two-slot hole does. */
    vm_release(p, a[5]);
    vm_release(p, a[7]);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, SLOT + 1, MEM_RESERVE, RW, APP),
                ERROR_NOT_ENOUGH_MEMORY);
    vm_release(p, a[6]);
    char *two = pa_virtual_alloc(p, NULL, SLOT + 1, MEM_RESERVE, RW, APP);
    CHECK_EQ(two, a[5]);
    char *one = pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE, RW, APP);
    CHECK_EQ(one, a[7]);
    vm_release(p, two);
    vm_release(p, one);
    for (int i = 0; i < 14; i++)
        if (i < 5 || i > 7) vm_release(p, a[i]);
    CHECK_EQ(vm_stats(p).allocations, 0);
    VM_END(p);
}

TEST(fact14_at_round_to_page_fails_87)
{
    /* k32:test_VirtualAlloc, nt:test_NtAllocateVirtualMemory */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_COMMIT | AT_ROUND_TO_PAGE, RW,
                                 APP),
                ERROR_INVALID_PARAMETER);
    CHECK_EQ(vm_stats(p).allocations, 0);
    VM_END(p);
}

TEST(fact15_no_process_fails_6)
{
    /* k32:test_VirtualAllocEx: a NULL process handle. The pa_virtual_* functions take the process
     * as the Ex functions take the handle. kernel32's own MEM_RELEASE check comes first. */
    MEMORY_BASIC_INFORMATION m;
    DWORD old;
    CHECK_FAILS(pa_virtual_alloc(NULL, NULL, PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP),
                ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_virtual_free(NULL, (void *)0x10000, 0, MEM_RELEASE, APP), ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_virtual_free(NULL, (void *)0x10000, 1, MEM_RELEASE, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(NULL, (void *)0x10000, PAGE, RW, &old, APP),
                ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_virtual_query(NULL, (void *)0x10000, &m, sizeof m), ERROR_INVALID_HANDLE);
}

TEST(fact16_top_down_takes_the_highest_free_slot)
{
    /* MS:VirtualAlloc; uv:alloc_free_area walks the free ranges from the top. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    char *top = (char *)pa_process_max_address(p) + 1 - SLOT;
    char *a = pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_TOP_DOWN, RW, APP);
    CHECK_EQ(a, top);
    char *b = pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_TOP_DOWN, RW, APP);
    CHECK_EQ(b, top - SLOT);
    char *c = pa_virtual_alloc(p, NULL, SLOT + PAGE, MEM_RESERVE | MEM_COMMIT | MEM_TOP_DOWN, RW,
                               APP);
    CHECK_EQ(c, top - 3 * SLOT);
    /* The highest hole is taken when it fits, skipped when it does not. */
    vm_release(p, b);
    char *d = pa_virtual_alloc(p, NULL, 2 * SLOT, MEM_RESERVE | MEM_TOP_DOWN, RW, APP);
    CHECK_EQ(d, top - 5 * SLOT);
    char *e = pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT | MEM_TOP_DOWN, RW, APP);
    CHECK_EQ(e, top - SLOT);
    /* Bottom-up is unaffected. */
    char *f = vm_alloc(p, PAGE, MEM_RESERVE, RW);
    CHECK_EQ(f, pa_process_min_address(p));
    char *all[] = {a, c, d, e, f};
    for (size_t i = 0; i < 5; i++) vm_release(p, all[i]);
    VM_END(p);
}

/* ---- 1.3 the reserve/commit state machine --------------------------------------------------- */

TEST(fact18_commit_noaccess_page_in_a_reservation)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE, NA);
    CHECK_EQ(pa_virtual_alloc(p, r, 0x1000, MEM_COMMIT, NA, APP), r);
    CHECK_VQ(p, r, r, r, NA, 0x1000, MEM_COMMIT, NA, MEM_PRIVATE);
    CHECK_VQ(p, r + 0x1000, r + 0x1000, r, NA, 0xF000, MEM_RESERVE, 0, MEM_PRIVATE);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact19_recommitting_committed_pages_succeeds_and_replaces_protection)
{
    /* k32:test_VirtualAlloc_protection, k32:test_VirtualProtect; uv:set_protection. The data
     * stays (MS:VirtualAlloc: committing a committed page does not fail) and nothing is charged
     * twice. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    a[0] = 7;
    static const DWORD prots[] = {RO, PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, NA,
                                  RW};
    for (size_t i = 0; i < sizeof prots / sizeof *prots; i++) {
        CHECK_EQ(pa_virtual_alloc(p, a + 0x10, 1, MEM_COMMIT, prots[i], APP), a);
        CHECK_REGION(p, a, a, RW, prots[i] == RW ? 0x2000 : 0x1000, MEM_COMMIT, prots[i]);
        unsigned char c = 0;
        if (prots[i] != NA) {
            CHECK_EQ(pa_mm_read(p, a, &c, 1, NULL), STATUS_SUCCESS);
            CHECK_EQ(c, 7);
        }
    }
    CHECK_EQ(vm_stats(p).committed, 2 * PAGE);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact20_commit_at_null_reserves_too)
{
    /* k32:test_VirtualAlloc_protection uses MEM_COMMIT alone. */
    pa_process_t *p = vm_new(0, 0);
    char *a = pa_virtual_alloc(p, NULL, 0x3000, MEM_COMMIT, PAGE_EXECUTE_READ, APP);
    CHECK(a != NULL);
    CHECK_EQ((uintptr_t)a & 0xFFFF, 0);
    CHECK_VQ(p, a, a, a, PAGE_EXECUTE_READ, 0x3000, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.allocations, 1);
    CHECK_EQ(s.reserved, 0x3000);
    CHECK_EQ(s.committed, 0x3000);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact21_commit_in_free_memory_fails_487)
{
    /* MS:VirtualAlloc; uv:allocate_virtual_memory (STATUS_NOT_MAPPED_VIEW). */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE, RW);
    CHECK_FAILS(pa_virtual_alloc(p, a + SLOT, PAGE, MEM_COMMIT, RW, APP), ERROR_INVALID_ADDRESS);
    /* The unusable tail of the allocation's slot is free memory too. */
    CHECK_FAILS(pa_virtual_alloc(p, a + PAGE, PAGE, MEM_COMMIT, RW, APP), ERROR_INVALID_ADDRESS);
    void *base = a + SLOT;
    size_t size = PAGE;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_COMMIT, RW, APP),
             STATUS_NOT_MAPPED_VIEW);
    vm_release(p, a);
    CHECK_FAILS(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW, APP), ERROR_INVALID_ADDRESS);
    CHECK_EQ(vm_stats(p).committed, 0);
    VM_END(p);
}

TEST(fact22_commit_past_the_reservation_fails_487_and_commits_nothing)
{
    /* uv:allocate_virtual_memory: the whole range must lie in one allocation. */
    pa_process_t *p = vm_new(0, 0);
    char *x = (char *)pa_process_min_address(p) + SLOT;
    CHECK_EQ(pa_virtual_alloc(p, x, 2 * PAGE, MEM_RESERVE, RW, APP), x);
    CHECK_FAILS(pa_virtual_alloc(p, x, 3 * PAGE, MEM_COMMIT, RW, APP), ERROR_INVALID_ADDRESS);
    CHECK_REGION(p, x, x, RW, 0x2000, MEM_RESERVE, 0);
    vm_release(p, x);
    /* Two adjacent allocations: a range spanning both is refused as a whole. */
    CHECK_EQ(pa_virtual_alloc(p, x, SLOT, MEM_RESERVE, RW, APP), x);
    CHECK_EQ(pa_virtual_alloc(p, x + SLOT, SLOT, MEM_RESERVE, RW, APP), x + SLOT);
    CHECK_FAILS(pa_virtual_alloc(p, x + SLOT - PAGE, 2 * PAGE, MEM_COMMIT, RW, APP),
                ERROR_INVALID_ADDRESS);
    CHECK_REGION(p, x, x, RW, SLOT, MEM_RESERVE, 0);
    CHECK_REGION(p, x + SLOT, x + SLOT, RW, SLOT, MEM_RESERVE, 0);
    CHECK_EQ(vm_stats(p).committed, 0);
    vm_release(p, x);
    vm_release(p, x + SLOT);
    VM_END(p);
}

static int all_bytes(const char *a, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] != v) return 0;
    return 1;
}

TEST(fact23_fresh_and_recommitted_memory_reads_zero)
{
    /* MS:VirtualAlloc; uv:decommit_pages maps fresh pages. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK(all_bytes(a, 4 * PAGE, 0));
    memset(a, 0x5A, 4 * PAGE);
    CHECK(pa_virtual_free(p, a + PAGE, 2 * PAGE, MEM_DECOMMIT, APP));
    CHECK_EQ(pa_virtual_alloc(p, a + PAGE, 2 * PAGE, MEM_COMMIT, RO, APP), a + PAGE);
    CHECK(all_bytes(a + PAGE, 2 * PAGE, 0));
    CHECK(all_bytes(a, PAGE, 0x5A));
    CHECK(all_bytes(a + 3 * PAGE, PAGE, 0x5A));
    /* Released and reserved again at the same address: zero as well. */
    vm_release(p, a);
    CHECK_EQ(pa_virtual_alloc(p, a, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP), a);
    CHECK(all_bytes(a, 4 * PAGE, 0));
    vm_release(p, a);
    VM_END(p);
}

/* ---- 1.4 invalid flags and protections ------------------------------------------------------ */

TEST(fact25_zero_protection_fails_87)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE, 0, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, 0, APP), ERROR_INVALID_PARAMETER);
    char *r = vm_alloc(p, PAGE, MEM_RESERVE, RW);
    CHECK_FAILS(pa_virtual_alloc(p, r, PAGE, MEM_COMMIT, 0, APP), ERROR_INVALID_PARAMETER);
    CHECK_EQ(vm_query(p, r).State, MEM_RESERVE);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact26_protection_table_for_commit)
{
    /* k32:test_VirtualAlloc_protection: exactly six base values work for private memory. */
    pa_process_t *p = vm_new(0, 0);
    int successes = 0;
    for (DWORD prot = 0; prot <= 0xFF; prot++) {
        pa_set_last_error(0xDEADBEEFu);
        char *a = pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, prot, APP);
        if (valid_private_base(prot)) {
            CHECK(a != NULL);
            if (!a) continue;
            successes++;
            CHECK_VQ(p, a, a, a, prot, PAGE, MEM_COMMIT, prot, MEM_PRIVATE);
            vm_release(p, a);
        } else {
            if (a) fprintf(stderr, "  protection 0x%x accepted\n", (unsigned)prot);
            CHECK(a == NULL);
            CHECK_EQ(pa_get_last_error(), ERROR_INVALID_PARAMETER);
        }
    }
    CHECK_EQ(successes, 6);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.allocations, 0);
    CHECK_EQ(s.committed, 0);
    VM_END(p);
}

TEST(fact27_writing_does_not_change_protect)
{
    /* k32:test_VirtualAlloc_protection */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, PAGE_EXECUTE_READWRITE);
    memset(a, 1, PAGE);
    CHECK_REGION(p, a, a, PAGE_EXECUTE_READWRITE, PAGE, MEM_COMMIT, PAGE_EXECUTE_READWRITE);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact28_two_base_protections_fail_87)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, RO | PAGE_EXECUTE, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE, RO | PAGE_EXECUTE, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_EQ(vm_stats(p).allocations, 0);
    VM_END(p);
}

TEST(fact29_nocache_is_an_allocation_attribute)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *a = pa_virtual_alloc(p, NULL, 0x2000, MEM_COMMIT, RW | PAGE_NOCACHE, APP);
    CHECK(a != NULL);
    CHECK_REGION(p, a, a, 0x204, 0x2000, MEM_COMMIT, 0x204);
    DWORD old = 0;
    CHECK(pa_virtual_protect(p, a, 0x1000, RW, &old, APP));
    CHECK_EQ(old, 0x204);
    CHECK_REGION(p, a, a, 0x204, 0x2000, MEM_COMMIT, 0x204);
    CHECK(pa_virtual_protect(p, a, 0x1000, RO, &old, APP));
    CHECK_EQ(old, 0x204);
    CHECK_REGION(p, a, a, 0x204, 0x1000, MEM_COMMIT, 0x202);
    CHECK_REGION(p, a + 0x1000, a, 0x204, 0x1000, MEM_COMMIT, 0x204);
    vm_release(p, a);
    /* On a normal allocation NOCACHE given to VirtualProtect is dropped. */
    char *b = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    CHECK(pa_virtual_protect(p, b, PAGE, RO | PAGE_NOCACHE, &old, APP));
    CHECK_EQ(old, RW);
    CHECK_REGION(p, b, b, RW, PAGE, MEM_COMMIT, RO);
    vm_release(p, b);
    VM_END(p);
}

TEST(fact30_write_watch_needs_reserve)
{
    /* k32:test_write_watch */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, SLOT, MEM_WRITE_WATCH, RW, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, SLOT, MEM_WRITE_WATCH | MEM_COMMIT, RW, APP),
                ERROR_INVALID_PARAMETER);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE | MEM_WRITE_WATCH, RW);
    CHECK_FAILS(pa_virtual_alloc(p, r, PAGE, MEM_COMMIT | MEM_WRITE_WATCH, RW, APP),
                ERROR_INVALID_PARAMETER);
    char *c = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW);
    CHECK_EQ(vm_stats(p).allocations, 2);
    vm_release(p, r);
    vm_release(p, c);
    VM_END(p);
}

TEST(fact31_invalid_allocation_types_fail_87)
{
    /* uv:NtAllocateVirtualMemory (type mask); MS:VirtualAlloc for MEM_LARGE_PAGES alone and
     * MEM_PHYSICAL. */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT, RW);
    static const DWORD types[] = {
        0, MEM_DECOMMIT, MEM_RELEASE, MEM_FREE, MEM_PHYSICAL, MEM_PHYSICAL | MEM_RESERVE,
        MEM_LARGE_PAGES, MEM_LARGE_PAGES | MEM_COMMIT, MEM_LARGE_PAGES | MEM_RESERVE,
        MEM_4MB_PAGES | MEM_RESERVE, MEM_COMMIT | MEM_DECOMMIT, MEM_RESERVE | MEM_RELEASE,
        MEM_TOP_DOWN, 0x10000000 /* Wine's wrong MEM_RESET_UNDO */, 0x80000000u | MEM_COMMIT};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, types[i], RW, APP), ERROR_INVALID_PARAMETER);
        CHECK_FAILS(pa_virtual_alloc(p, r, PAGE, types[i], RW, APP), ERROR_INVALID_PARAMETER);
    }
    CHECK_EQ(vm_stats(p).allocations, 1);
    CHECK_REGION(p, r, r, RW, SLOT, MEM_COMMIT, RW);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact31_large_pages_without_privilege_fails_1314)
{
    /* MS:VirtualAlloc: MEM_LARGE_PAGES needs SeLockMemoryPrivilege, which nobody holds here
     * (reference section 4 expects ERROR_PRIVILEGE_NOT_HELD). */
    pa_process_t *p = vm_new(0, 0);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 2 * MiB, MEM_LARGE_PAGES | MEM_RESERVE | MEM_COMMIT, RW,
                                 APP),
                ERROR_PRIVILEGE_NOT_HELD);
    void *base = NULL;
    size_t size = 2 * MiB;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size,
                                           MEM_LARGE_PAGES | MEM_RESERVE | MEM_COMMIT, RW, APP),
             STATUS_PRIVILEGE_NOT_HELD);
    CHECK_EQ(vm_stats(p).allocations, 0);
    VM_END(p);
}

TEST(fact32_guard_with_noaccess_and_exclusive_modifiers_fail_87)
{
    /* creating-guard-pages, memory-protection-constants; the reference recommends 87. */
    pa_process_t *p = vm_new(0, 0);
    static const DWORD bad[] = {NA | PAGE_GUARD, NA | PAGE_NOCACHE, NA | PAGE_WRITECOMBINE,
                                RW | PAGE_GUARD | PAGE_NOCACHE, RW | PAGE_NOCACHE | PAGE_WRITECOMBINE,
                                RW | PAGE_GUARD | PAGE_WRITECOMBINE, PAGE_GUARD, PAGE_NOCACHE};
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    DWORD old = 0x77;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, bad[i], APP),
                    ERROR_INVALID_PARAMETER);
        CHECK_FAILS(pa_virtual_protect(p, a, PAGE, bad[i], &old, APP), ERROR_INVALID_PARAMETER);
    }
    CHECK_EQ(old, 0x77);
    CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, RW);
    /* The valid combinations. */
    char *g = pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, RO | PAGE_GUARD, APP);
    CHECK(g != NULL);
    char *w = pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, RW | PAGE_WRITECOMBINE, APP);
    CHECK(w != NULL);
    if (w) CHECK_REGION(p, w, w, RW | PAGE_WRITECOMBINE, PAGE, MEM_COMMIT, RW | PAGE_WRITECOMBINE);
    if (g) vm_release(p, g);
    if (w) vm_release(p, w);
    vm_release(p, a);
    VM_END(p);
}

/* ---- 1.5 MEM_RESET -------------------------------------------------------------------------- */

TEST(fact33_mem_reset_keeps_state_and_ignores_protect)
{
    /* k32:test_VirtualAlloc: data is kept or zeroed, VirtualQuery does not change. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 2 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    memset(a, 0x5A, 2 * PAGE);
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_RESET, NA, APP), a);
    CHECK_REGION(p, a, a, RW, 0x2000, MEM_COMMIT, RW);
    CHECK(all_bytes(a, PAGE, 0x5A) || all_bytes(a, PAGE, 0));
    CHECK(all_bytes(a + PAGE, PAGE, 0x5A));
    a[5] = 1; /* still writable */
    CHECK_EQ(a[5], 1);
    CHECK_EQ(vm_stats(p).committed, 2 * PAGE);
    /* Free memory and a NULL address. */
    CHECK_FAILS(pa_virtual_alloc(p, a + SLOT, PAGE, MEM_RESET, NA, APP), ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESET, NA, APP), ERROR_INVALID_PARAMETER);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact36_mem_reset_cannot_be_combined)
{
    /* MS:VirtualAlloc: "cannot be used with any other value". */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    static const DWORD types[] = {MEM_RESET | MEM_COMMIT, MEM_RESET | MEM_RESERVE,
                                  MEM_RESET | MEM_TOP_DOWN, MEM_RESET | MEM_RESET_UNDO,
                                  MEM_RESET_UNDO | MEM_COMMIT};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        CHECK_FAILS(pa_virtual_alloc(p, a, PAGE, types[i], RW, APP), ERROR_INVALID_PARAMETER);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact37_reset_undo_uses_the_sdk_value)
{
    /* MS:VirtualAlloc, hdr: MEM_RESET_UNDO is 0x01000000; success means the data is intact. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    memset(a, 0x77, PAGE);
    CHECK_EQ(pa_virtual_alloc(p, a, PAGE, MEM_RESET, NA, APP), a);
    char *u = pa_virtual_alloc(p, a, PAGE, 0x01000000, NA, APP);
    if (u) {
        CHECK_EQ(u, a);
        CHECK(all_bytes(a, PAGE, 0x77));
    } else {
        CHECK(all_bytes(a, PAGE, 0x77) || all_bytes(a, PAGE, 0));
    }
    CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_alloc(p, a, PAGE, 0x10000000, NA, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESET_UNDO, NA, APP),
                ERROR_INVALID_PARAMETER);
    vm_release(p, a);
    VM_END(p);
}

/* ---- 1.6 VirtualFree ------------------------------------------------------------------------ */

TEST(fact38_free_type_zero_or_mem_free_fails_87)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_free(p, a, 0x10000, 0, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_free(p, a, 0, MEM_FREE, APP), ERROR_INVALID_PARAMETER);
    CHECK_REGION(p, a, a, RW, SLOT, MEM_COMMIT, RW);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact40_release_with_nonzero_size_fails_87)
{
    /* k32:test_VirtualAlloc; kb:VirtualFreeEx */
    char *a = VirtualAlloc(NULL, SLOT, MEM_RESERVE, PAGE_NOACCESS);
    CHECK(a != NULL);
    CHECK_FAILS(VirtualFree(a, 1, MEM_RELEASE), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(VirtualFree(a, SLOT, MEM_RELEASE), ERROR_INVALID_PARAMETER);
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(VirtualQuery(a, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_RESERVE);
    CHECK(VirtualFree(a, 0, MEM_RELEASE));
    CHECK_EQ(VirtualQuery(a, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_FREE);
}

TEST(fact44_double_free_and_free_of_free_memory_fail_487)
{
    /* nt:test_NtFreeVirtualMemory (STATUS_MEMORY_NOT_ALLOCATED) */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, 0, MEM_RELEASE, APP), ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, PAGE, MEM_DECOMMIT, APP), ERROR_INVALID_ADDRESS);
    vm_release(p, a);
    CHECK_FAILS(pa_virtual_free(p, a, 0, MEM_RELEASE, APP), ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_free(p, a, PAGE, MEM_DECOMMIT, APP), ERROR_INVALID_ADDRESS);
    void *base = a;
    size_t size = 0;
    CHECK_EQ(pa_nt_free_virtual_memory(p, &base, &size, MEM_RELEASE, APP),
             STATUS_MEMORY_NOT_ALLOCATED);
    VM_END(p);
}

TEST(release_not_at_base_fails_487_and_decommit_past_the_end_fails_87)
{
    /* uv:NtFreeVirtualMemory: STATUS_FREE_VM_NOT_AT_BASE and STATUS_UNABLE_TO_FREE_VM, mapped by
     * err. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, 0, MEM_RELEASE, APP), ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, 0, MEM_DECOMMIT, APP), ERROR_INVALID_ADDRESS);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, 4 * PAGE, MEM_DECOMMIT, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_free(p, a + PAGE, SIZE_MAX - PAGE, MEM_DECOMMIT, APP), /* wraps */
                ERROR_INVALID_PARAMETER);
    CHECK_REGION(p, a, a, RW, 4 * PAGE, MEM_COMMIT, RW);
    /* Decommitting reserved pages is no error (MS:VirtualFree). */
    CHECK(pa_virtual_free(p, a, 0, MEM_DECOMMIT, APP));
    CHECK(pa_virtual_free(p, a, 0, MEM_DECOMMIT, APP));
    CHECK_REGION(p, a, a, RW, 4 * PAGE, MEM_RESERVE, 0);
    CHECK_EQ(vm_stats(p).committed, 0);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact46_nt_partial_release_is_not_modelled)
{
    /* nt:test_NtFreeVirtualMemory releases p+0x1000 alone on Windows 10; pyalloc deliberately
     * refuses (STATUS_UNABLE_TO_FREE_VM) and changes nothing. VirtualFree cannot ask (fact 40). */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    void *base = a + 0x1001;
    size_t size = 0xFFF;
    CHECK_EQ(pa_nt_free_virtual_memory(p, &base, &size, MEM_RELEASE, APP),
             STATUS_UNABLE_TO_FREE_VM);
    CHECK_REGION(p, a, a, RW, 4 * PAGE, MEM_COMMIT, RW);
    /* The whole allocation given with its size is an ordinary release. */
    base = a;
    size = 4 * PAGE;
    CHECK_EQ(pa_nt_free_virtual_memory(p, &base, &size, MEM_RELEASE, APP), STATUS_SUCCESS);
    CHECK_EQ(vm_query(p, a).State, MEM_FREE);
    VM_END(p);
}

TEST(fact48_free_null_and_decommit_with_release_fail_87)
{
    /* uv:NtFreeVirtualMemory; MSVC C6331 */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_free(p, NULL, 0, MEM_RELEASE, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_free(p, NULL, PAGE, MEM_DECOMMIT, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_free(p, a, 0, MEM_DECOMMIT | MEM_RELEASE, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, RW);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact49_release_of_mixed_committed_and_reserved_frees_everything)
{
    /* MS:VirtualFree; k32:test_stack_commit (4 MiB reservation, a few pages committed). */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 4 * MiB, MEM_RESERVE, RW);
    for (size_t off = 0; off < 4 * MiB; off += 37 * PAGE)
        CHECK_EQ(pa_virtual_alloc(p, a + off, PAGE, MEM_COMMIT, RW, APP), a + off);
    CHECK(vm_stats(p).committed > 0);
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, APP));
    CHECK_VQ(p, a, a, 0, 0, vm_query(p, a).RegionSize, MEM_FREE, NA, 0);
    CHECK(vm_query(p, a).RegionSize >= 4 * MiB);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.committed, 0);
    CHECK_EQ(s.reserved, 0);
    CHECK_EQ(s.allocations, 0);
    VM_END(p);
}

/* ---- 1.7 VirtualProtect --------------------------------------------------------------------- */

TEST(fact50_protect_reserved_pages_fails_487)
{
    /* k32:test_VirtualAlloc (STATUS_NOT_COMMITTED) */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE, NA);
    DWORD old = 0x77;
    CHECK_FAILS(pa_virtual_protect(p, r, 0xFFFC, RO, &old, APP), ERROR_INVALID_ADDRESS);
    void *base = r;
    size_t size = 0xFFFC;
    CHECK_EQ(pa_nt_protect_virtual_memory(p, &base, &size, RO, &old, APP), STATUS_NOT_COMMITTED);
    CHECK_EQ(old, 0x77);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact51_protect_partly_committed_range_fails_487_changes_nothing)
{
    /* k32:test_VirtualAlloc; MS:VirtualProtect */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE, NA);
    CHECK_EQ(pa_virtual_alloc(p, r, PAGE, MEM_COMMIT, NA, APP), r);
    DWORD old = 0x77;
    CHECK_FAILS(pa_virtual_protect(p, r, 0xFFFC, RO, &old, APP), ERROR_INVALID_ADDRESS);
    CHECK_REGION(p, r, r, NA, PAGE, MEM_COMMIT, NA);
    /* Committed pages at both ends, a reserved hole in the middle. */
    CHECK_EQ(pa_virtual_alloc(p, r + 2 * PAGE, PAGE, MEM_COMMIT, NA, APP), r + 2 * PAGE);
    CHECK_FAILS(pa_virtual_protect(p, r, 3 * PAGE, RO, &old, APP), ERROR_INVALID_ADDRESS);
    CHECK_REGION(p, r, r, NA, PAGE, MEM_COMMIT, NA);
    CHECK_REGION(p, r + 2 * PAGE, r, NA, PAGE, MEM_COMMIT, NA);
    CHECK_EQ(old, 0x77);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact52_protect_noaccess_readonly_readwrite)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, SLOT, MEM_RESERVE, NA);
    CHECK_EQ(pa_virtual_alloc(p, r, PAGE, MEM_COMMIT, NA, APP), r);
    DWORD old = 0;
    CHECK(pa_virtual_protect(p, r, PAGE, RO, &old, APP));
    CHECK_EQ(old, NA);
    CHECK(pa_virtual_protect(p, r, PAGE, RW, &old, APP));
    CHECK_EQ(old, RO);
    CHECK_VQ(p, r, r, r, NA, PAGE, MEM_COMMIT, RW, MEM_PRIVATE);
    r[1] = 1; /* the host agrees */
    vm_release(p, r);
    VM_END(p);
}

TEST(fact53_protect_with_null_old_fails_998)
{
    /* k32:test_VirtualProtect: even when the protection does not change. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, RW, NULL, APP), ERROR_NOACCESS);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, RO, NULL, APP), ERROR_NOACCESS);
    CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, RW);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact54_protect_target_table)
{
    /* k32:test_VirtualProtect: each valid target returns the previous protection. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    DWORD prev = RW;
    int successes = 0;
    for (DWORD prot = 0; prot <= 0xFF; prot++) {
        DWORD old = 0x77;
        pa_set_last_error(0xDEADBEEFu);
        BOOL ok = pa_virtual_protect(p, a, PAGE, prot, &old, APP);
        if (valid_private_base(prot)) {
            CHECK(ok);
            CHECK_EQ(old, prev);
            successes++;
            prev = prot;
        } else {
            CHECK(!ok);
            CHECK_EQ(pa_get_last_error(), ERROR_INVALID_PARAMETER);
            CHECK_EQ(old, 0x77);
        }
        CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, prev);
    }
    CHECK_EQ(successes, 6);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact55_protect_rw_with_exec_writecopy_or_zero_fails_87)
{
    /* k32:test_VirtualAlloc */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    DWORD old;
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, RW | PAGE_EXECUTE_WRITECOPY, &old, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, 0, &old, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(p, a, PAGE, PAGE_WRITECOPY, &old, APP),
                ERROR_INVALID_PARAMETER); /* fact 110 */
    CHECK_REGION(p, a, a, RW, PAGE, MEM_COMMIT, RW);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact56_old_protection_is_the_first_pages)
{
    /* MS:VirtualProtect; uv:NtProtectVirtualMemory */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, 3 * PAGE, MEM_COMMIT, RW);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, PAGE, NA, &old, APP));
    CHECK(pa_virtual_protect(p, a + PAGE, PAGE, RO, &old, APP));
    CHECK(pa_virtual_protect(p, a + 2 * PAGE, PAGE, PAGE_EXECUTE, &old, APP));
    CHECK(pa_virtual_protect(p, a + PAGE + 5, 2 * PAGE - 5, RW, &old, APP));
    CHECK_EQ(old, RO);
    CHECK(pa_virtual_protect(p, a, 3 * PAGE, PAGE_EXECUTE_READ, &old, APP));
    CHECK_EQ(old, NA);
    CHECK_REGION(p, a, a, RW, 3 * PAGE, MEM_COMMIT, PAGE_EXECUTE_READ);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact57_protect_across_allocations_or_on_free_memory_fails_87)
{
    /* MS:VirtualProtect; uv:NtProtectVirtualMemory (Wine's code). */
    pa_process_t *p = vm_new(0, 0);
    char *x = (char *)pa_process_min_address(p) + SLOT;
    CHECK_EQ(pa_virtual_alloc(p, x, SLOT, MEM_RESERVE | MEM_COMMIT, RW, APP), x);
    CHECK_EQ(pa_virtual_alloc(p, x + SLOT, PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP), x + SLOT);
    DWORD old = 0x77;
    CHECK_FAILS(pa_virtual_protect(p, x + SLOT - PAGE, 2 * PAGE, RO, &old, APP),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(p, x + SLOT, 2 * PAGE, RO, &old, APP), /* into the tail */
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(p, x + 3 * SLOT, PAGE, RO, &old, APP), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_protect(p, NULL, PAGE, RO, &old, APP), ERROR_INVALID_PARAMETER);
    CHECK_EQ(old, 0x77);
    CHECK_REGION(p, x, x, RW, SLOT, MEM_COMMIT, RW);
    CHECK_REGION(p, x + SLOT, x + SLOT, RW, PAGE, MEM_COMMIT, RW);
    vm_release(p, x);
    vm_release(p, x + SLOT);
    VM_END(p);
}

/* ---- regions split and merge ---------------------------------------------------------------- */

TEST(regions_split_and_merge_as_pages_change)
{
    /* VirtualQuery reports runs of equal state and protection inside one allocation. */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, 16 * PAGE, MEM_RESERVE, RW);
    CHECK_REGION(p, r, r, RW, 16 * PAGE, MEM_RESERVE, 0);
    CHECK_EQ(pa_virtual_alloc(p, r + 4 * PAGE, 4 * PAGE, MEM_COMMIT, RW, APP), r + 4 * PAGE);
    CHECK_REGION(p, r, r, RW, 4 * PAGE, MEM_RESERVE, 0);
    CHECK_REGION(p, r + 4 * PAGE, r, RW, 4 * PAGE, MEM_COMMIT, RW);
    CHECK_REGION(p, r + 8 * PAGE, r, RW, 8 * PAGE, MEM_RESERVE, 0);
    /* A query in the middle of a region starts at the queried page. */
    CHECK_REGION(p, r + 6 * PAGE, r, RW, 2 * PAGE, MEM_COMMIT, RW);
    DWORD old;
    CHECK(pa_virtual_protect(p, r + 5 * PAGE, PAGE, RO, &old, APP));
    CHECK_REGION(p, r + 4 * PAGE, r, RW, PAGE, MEM_COMMIT, RW);
    CHECK_REGION(p, r + 5 * PAGE, r, RW, PAGE, MEM_COMMIT, RO);
    CHECK_REGION(p, r + 6 * PAGE, r, RW, 2 * PAGE, MEM_COMMIT, RW);
    CHECK(pa_virtual_protect(p, r + 5 * PAGE, PAGE, RW, &old, APP));
    CHECK_REGION(p, r + 4 * PAGE, r, RW, 4 * PAGE, MEM_COMMIT, RW);
    /* Committing the neighbours merges them; a guard splits. */
    CHECK_EQ(pa_virtual_alloc(p, r, 4 * PAGE, MEM_COMMIT, RW, APP), r);
    CHECK_REGION(p, r, r, RW, 8 * PAGE, MEM_COMMIT, RW);
    CHECK(pa_virtual_protect(p, r + 7 * PAGE, PAGE, RW | PAGE_GUARD, &old, APP));
    CHECK_REGION(p, r, r, RW, 7 * PAGE, MEM_COMMIT, RW);
    CHECK_REGION(p, r + 7 * PAGE, r, RW, PAGE, MEM_COMMIT, RW | PAGE_GUARD);
    /* Decommit splits; recommit with the same protection merges. */
    CHECK(pa_virtual_free(p, r + 2 * PAGE, PAGE, MEM_DECOMMIT, APP));
    CHECK_REGION(p, r, r, RW, 2 * PAGE, MEM_COMMIT, RW);
    CHECK_REGION(p, r + 2 * PAGE, r, RW, PAGE, MEM_RESERVE, 0);
    CHECK_REGION(p, r + 3 * PAGE, r, RW, 4 * PAGE, MEM_COMMIT, RW);
    CHECK_EQ(pa_virtual_alloc(p, r + 2 * PAGE, PAGE, MEM_COMMIT, RW, APP), r + 2 * PAGE);
    CHECK_REGION(p, r, r, RW, 7 * PAGE, MEM_COMMIT, RW);
    /* Decommitting everything gives one reserved region again. */
    CHECK(pa_virtual_free(p, r, 16 * PAGE, MEM_DECOMMIT, APP));
    CHECK_REGION(p, r, r, RW, 16 * PAGE, MEM_RESERVE, 0);
    vm_release(p, r);
    VM_END(p);
}

/* ---- 1.8 VirtualQuery ----------------------------------------------------------------------- */

TEST(fact60_query_returns_48_bytes_in_the_x64_layout)
{
    /* k32:test_VirtualAlloc; MEMORY_BASIC_INFORMATION (section 2). */
    CHECK_EQ(sizeof(MEMORY_BASIC_INFORMATION), 48);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, AllocationBase), 8);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, AllocationProtect), 16);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, PartitionId), 20);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, RegionSize), 24);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, State), 32);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, Protect), 36);
    CHECK_EQ(offsetof(MEMORY_BASIC_INFORMATION, Type), 40);
    CHECK_EQ(sizeof(SYSTEM_INFO), 48);
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    unsigned char big[100];
    memset(big, 0xA5, sizeof big);
    CHECK_EQ(pa_virtual_query(p, a, (MEMORY_BASIC_INFORMATION *)(void *)big, sizeof big), 48);
    CHECK_EQ(big[48], 0xA5); /* nothing written past the structure */
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(pa_virtual_query(p, a, &m, sizeof m), 48);
    CHECK_EQ(m.PartitionId, 0);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact62_regions_do_not_cross_adjacent_allocations)
{
    /* MS:VirtualQuery; uv:fill_basic_memory_info */
    pa_process_t *p = vm_new(0, 0);
    char *x = (char *)pa_process_min_address(p) + SLOT;
    CHECK_EQ(pa_virtual_alloc(p, x, SLOT, MEM_RESERVE, RW, APP), x);
    CHECK_EQ(pa_virtual_alloc(p, x + SLOT, SLOT, MEM_RESERVE, RW, APP), x + SLOT);
    CHECK_VQ(p, x, x, x, RW, SLOT, MEM_RESERVE, 0, MEM_PRIVATE);
    CHECK_VQ(p, x + SLOT, x + SLOT, x + SLOT, RW, SLOT, MEM_RESERVE, 0, MEM_PRIVATE);
    CHECK_EQ(pa_virtual_alloc(p, x, SLOT, MEM_COMMIT, RW, APP), x);
    CHECK_EQ(pa_virtual_alloc(p, x + SLOT, SLOT, MEM_COMMIT, RW, APP), x + SLOT);
    CHECK_VQ(p, x + PAGE, x + PAGE, x, RW, SLOT - PAGE, MEM_COMMIT, RW, MEM_PRIVATE);
    vm_release(p, x);
    vm_release(p, x + SLOT);
    VM_END(p);
}

TEST(fact63_free_region_reports_the_distance_to_the_next_allocation)
{
    /* k32:test_MapViewOfFile (after unmapping); MS:VirtualQuery's 40 MB example. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    char *lo = (char *)pa_process_min_address(p);
    char *top = (char *)pa_process_max_address(p) + 1;
    CHECK_EQ(pa_virtual_alloc(p, lo, PAGE, MEM_RESERVE, RW, APP), lo);
    CHECK_EQ(pa_virtual_alloc(p, lo + 4 * SLOT, PAGE, MEM_RESERVE, RW, APP), lo + 4 * SLOT);
    /* The unusable tail of the first slot reports as free up to the next allocation. */
    CHECK_VQ(p, lo + PAGE + 0x234, lo + PAGE, 0, 0, 4 * SLOT - PAGE, MEM_FREE, NA, 0);
    CHECK_VQ(p, lo + 2 * SLOT + 0x10, lo + 2 * SLOT, 0, 0, 2 * SLOT, MEM_FREE, NA, 0);
    CHECK_VQ(p, lo + 4 * SLOT + PAGE, lo + 4 * SLOT + PAGE, 0, 0, top - (lo + 4 * SLOT + PAGE),
             MEM_FREE, NA, 0);
    vm_release(p, lo);
    CHECK_VQ(p, lo, lo, 0, 0, 4 * SLOT, MEM_FREE, NA, 0);
    vm_release(p, lo + 4 * SLOT);
    CHECK_VQ(p, lo, lo, 0, 0, top - lo, MEM_FREE, NA, 0);
    VM_END(p);
}

TEST(fact64_allocation_protect_never_changes)
{
    /* k32:test_guard_page, k32:test_MapViewOfFile */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, 4 * PAGE, MEM_RESERVE, PAGE_EXECUTE_READ);
    DWORD old;
    CHECK_EQ(pa_virtual_alloc(p, r, 4 * PAGE, MEM_COMMIT, RW, APP), r);
    CHECK(pa_virtual_protect(p, r, PAGE, NA, &old, APP));
    CHECK(pa_virtual_protect(p, r + PAGE, PAGE, RO | PAGE_GUARD, &old, APP));
    CHECK(pa_virtual_free(p, r + 2 * PAGE, PAGE, MEM_DECOMMIT, APP));
    for (int i = 0; i < 4; i++)
        CHECK_EQ(vm_query(p, r + i * PAGE).AllocationProtect, PAGE_EXECUTE_READ);
    vm_release(p, r);
    VM_END(p);
}

TEST(fact65_write_watch_is_invisible_to_query)
{
    /* k32:test_write_watch; uv:fill_basic_memory_info masks the watch bit. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW);
    a[3 * PAGE] = 1; /* a direct store: the fault handler records it */
    char one = 1;
    CHECK_EQ(pa_mm_write(p, a + 9 * PAGE, &one, 1, NULL), STATUS_SUCCESS);
    CHECK_REGION(p, a, a, RW, SLOT, MEM_COMMIT, RW);
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 2);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact66_query_address_limits)
{
    /* ntinfo:test_queryvirtualmemory: below the lowest address works, at or past the limit 87. */
    pa_process_t *p = vm_new(1 * MiB, 0);
    uintptr_t lo = pa_process_min_address(p), hi = pa_process_max_address(p);
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(pa_virtual_query(p, NULL, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_FREE);
    CHECK_EQ(m.Protect, NA);
    CHECK_EQ(m.BaseAddress, 0);
    CHECK_EQ(pa_virtual_query(p, (void *)0xFFFF, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_FREE);
    CHECK_EQ(m.BaseAddress, 0xF000);
    /* The never-usable null slot of the process. */
    CHECK_VQ(p, lo - 1, lo - PAGE, 0, 0, PAGE, MEM_FREE, NA, 0);
    CHECK_VQ(p, lo, lo, 0, 0, hi + 1 - lo, MEM_FREE, NA, 0);
    CHECK_VQ(p, hi, hi + 1 - PAGE, 0, 0, PAGE, MEM_FREE, NA, 0);
    CHECK_FAILS(pa_virtual_query(p, (void *)(hi + 1), &m, sizeof m), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_virtual_query(p, (void *)~(uintptr_t)0, &m, sizeof m),
                ERROR_INVALID_PARAMETER);
    VM_END(p);
}

TEST(fact67_short_length_fails_24)
{
    /* ntinfo:test_queryvirtualmemory (STATUS_INFO_LENGTH_MISMATCH) */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, PAGE, MEM_COMMIT, RW);
    MEMORY_BASIC_INFORMATION m;
    CHECK_FAILS(pa_virtual_query(p, a, &m, sizeof m - 1), ERROR_BAD_LENGTH);
    CHECK_FAILS(pa_virtual_query(p, a, &m, 0), ERROR_BAD_LENGTH);
    CHECK_FAILS(VirtualQuery(a, &m, 28), ERROR_BAD_LENGTH); /* the x86 size */
    /* A NULL buffer is a fault in the probe (STATUS_ACCESS_VIOLATION). */
    CHECK_FAILS(pa_virtual_query(p, a, NULL, sizeof m), ERROR_NOACCESS);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact68_reserved_protect_is_zero_free_protect_is_noaccess)
{
    /* k32:test_VirtualAlloc, k32:test_MapViewOfFile */
    pa_process_t *p = vm_new(0, 0);
    char *r = vm_alloc(p, PAGE, MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    CHECK_EQ(vm_query(p, r).Protect, 0);
    CHECK_EQ(vm_query(p, r).State, MEM_RESERVE);
    CHECK_EQ(vm_query(p, r + PAGE).Protect, PAGE_NOACCESS);
    CHECK_EQ(vm_query(p, r + PAGE).State, MEM_FREE);
    vm_release(p, r);
    CHECK_EQ(vm_query(p, r).Protect, PAGE_NOACCESS);
    VM_END(p);
}

/* ---- 1.10 write watch ----------------------------------------------------------------------- */

TEST(fact75_fresh_write_watch_allocation_reports_nothing)
{
    /* k32:test_write_watch, through the Windows names. */
    char *a = VirtualAlloc(NULL, 0x10000, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH,
                           PAGE_READWRITE);
    CHECK(a != NULL);
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(VirtualQuery(a, &m, sizeof m), sizeof m);
    CHECK_EQ(m.AllocationProtect, RW);
    CHECK_EQ(m.RegionSize, 0x10000);
    CHECK_EQ(m.State, MEM_COMMIT);
    CHECK_EQ(m.Protect, RW);
    CHECK_EQ(m.Type, MEM_PRIVATE);
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran = 0;
    CHECK_EQ(GetWriteWatch(0, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    CHECK_EQ(gran, 0x1000);
    /* Reading does not count as writing. */
    CHECK_EQ(vm_load(a + 0x2000), 0);
    count = 16;
    CHECK_EQ(GetWriteWatch(0, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    CHECK(VirtualFree(a, 0, MEM_RELEASE));
}

TEST(fact77_written_page_reported_then_reset)
{
    /* k32:test_write_watch: a direct store to base[page + 1]. */
    char *a = VirtualAlloc(NULL, 0x10000, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH,
                           PAGE_READWRITE);
    CHECK(a != NULL);
    pa_process_t *cur = pa_process_current();
    uint64_t faults0 = vm_stats(cur).watch_faults;
    a[0x1000 + 1] = 1;
    a[0x1000 + 2] = 2; /* same page: no second fault */
    CHECK_EQ(vm_stats(cur).watch_faults, faults0 + 1);
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran = 0;
    CHECK_EQ(GetWriteWatch(0, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 0x1000);
    CHECK_EQ(gran, 0x1000);
    count = 16;
    CHECK_EQ(GetWriteWatch(WRITE_WATCH_FLAG_RESET, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 0x1000);
    count = 16;
    CHECK_EQ(GetWriteWatch(0, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    /* Re-armed: the next store faults and is recorded again. */
    a[0x1000] = 3;
    CHECK_EQ(vm_stats(cur).watch_faults, faults0 + 2);
    count = 16;
    CHECK_EQ(GetWriteWatch(0, a, 0x10000, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(a[0x1000 + 1], 1);
    CHECK(VirtualFree(a, 0, MEM_RELEASE));
}

TEST(fact77_write_watch_lists_in_address_order_and_reset_stops_with_the_list)
{
    /* k32:test_write_watch (several pages, ResetWriteWatch); uv:NtGetWriteWatch resets only
     * what it scanned when the caller's array fills up. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW);
    a[9 * PAGE] = 1;
    a[2 * PAGE + 100] = 1;
    a[5 * PAGE] = 1;
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 3);
    CHECK_EQ(addr[0], a + 2 * PAGE);
    CHECK_EQ(addr[1], a + 5 * PAGE);
    CHECK_EQ(addr[2], a + 9 * PAGE);
    /* A sub-range sees only its pages. */
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a + 3 * PAGE, 4 * PAGE, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 5 * PAGE);
    /* A short array with reset: the two listed pages are re-armed, the third is not. */
    count = 2;
    CHECK_EQ(pa_get_write_watch(p, WRITE_WATCH_FLAG_RESET, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 2);
    CHECK_EQ(addr[1], a + 5 * PAGE);
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 9 * PAGE);
    /* ResetWriteWatch clears the rest. */
    CHECK_EQ(pa_reset_write_watch(p, a, SLOT), 0);
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact80_protection_changes_do_not_touch_watch_state)
{
    /* k32:test_write_watch: reserve and commit NOACCESS, make RW, write, make NOACCESS. */
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, SLOT, MEM_RESERVE | MEM_WRITE_WATCH, NA);
    CHECK_EQ(pa_virtual_alloc(p, a, SLOT, MEM_COMMIT, NA, APP), a);
    DWORD old;
    CHECK(pa_virtual_protect(p, a, SLOT, RW, &old, APP));
    void *addr[16];
    ULONG_PTR count = 16;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    a[0x2000] = 1;
    CHECK(pa_virtual_protect(p, a, SLOT, NA, &old, APP));
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 0x2000);
    /* A protection change leaves a reset page clean and still watched. */
    CHECK_EQ(pa_reset_write_watch(p, a, SLOT), 0);
    CHECK(pa_virtual_protect(p, a, SLOT, PAGE_EXECUTE_READWRITE, &old, APP));
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 0);
    a[0x3000] = 1;
    count = 16;
    CHECK_EQ(pa_get_write_watch(p, 0, a, SLOT, addr, &count, &gran), 0);
    CHECK_EQ(count, 1);
    CHECK_EQ(addr[0], a + 0x3000);
    vm_release(p, a);
    VM_END(p);
}

TEST(fact76_81_write_watch_errors)
{
    /* k32:test_write_watch; uv:NtGetWriteWatch order of checks. Failure returns (UINT)-1. */
    pa_process_t *p = vm_new(0, 0);
    const size_t size = SLOT;
    char *a = vm_alloc(p, size, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW);
    char *plain = vm_alloc(p, size, MEM_RESERVE | MEM_COMMIT, RW);
    void *addr[16];
    ULONG_PTR count;
    ULONG gran;
#define WW(flags, base, sz, ad, cnt, gr) pa_get_write_watch(p, flags, base, sz, ad, cnt, gr)
    count = 16;
    CHECK_WW_FAILS(WW(0, NULL, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(0, plain, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 0;
    CHECK_WW_FAILS(WW(0, a, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    CHECK_WW_FAILS(WW(0, a, size, addr, NULL, &gran), ERROR_NOACCESS);
    count = 16;
    CHECK_WW_FAILS(WW(0, a, size, addr, &count, NULL), ERROR_NOACCESS);
    count = 16;
    CHECK_WW_FAILS(WW(0, a, size, NULL, &count, &gran), ERROR_NOACCESS);
    count = 0;
    CHECK_WW_FAILS(WW(0, a, size, NULL, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(2, a, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(0xFFFFFFFFu, a, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(0, a, 0, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(0, a, size + PAGE, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    CHECK_WW_FAILS(WW(0, a + size - PAGE, PAGE + 1, addr, &count, &gran),
                   ERROR_INVALID_PARAMETER);
    /* The last page exactly is fine. */
    count = 16;
    CHECK_EQ(WW(0, a + size - PAGE, PAGE, addr, &count, &gran), 0);
    CHECK_WW_FAILS(pa_reset_write_watch(p, a, 0), ERROR_INVALID_PARAMETER);
    CHECK_WW_FAILS(pa_reset_write_watch(p, plain, size), ERROR_INVALID_PARAMETER);
    CHECK_WW_FAILS(pa_reset_write_watch(p, a, size + 1), ERROR_INVALID_PARAMETER);
    CHECK_WW_FAILS(pa_reset_write_watch(p, NULL, size), ERROR_INVALID_PARAMETER);
    /* The Windows names return the same. */
    count = 16;
    CHECK_WW_FAILS(GetWriteWatch(0, NULL, size, addr, &count, &gran), ERROR_INVALID_PARAMETER);
    CHECK_WW_FAILS(ResetWriteWatch(NULL, size), ERROR_INVALID_PARAMETER);
#undef WW
    vm_release(p, a);
    vm_release(p, plain);
    VM_END(p);
}

/* ---- errors: commit limit and the status table ---------------------------------------------- */

TEST(commit_limit_fails_1455_and_charges_each_page_once)
{
    /* pa_process_options_t.commit_limit: STATUS_COMMITMENT_LIMIT -> ERROR_COMMITMENT_LIMIT. */
    pa_process_t *p = vm_new(0, 16 * PAGE);
    CHECK_EQ(vm_stats(p).commit_limit, 16 * PAGE);
    char *a = vm_alloc(p, 16 * PAGE, MEM_RESERVE | MEM_COMMIT, RW);
    /* A failed reserve-and-commit leaves no reservation behind. */
    CHECK_FAILS(pa_virtual_alloc(p, NULL, PAGE, MEM_RESERVE | MEM_COMMIT, RW, APP),
                ERROR_COMMITMENT_LIMIT);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.allocations, 1);
    CHECK_EQ(s.reserved, 16 * PAGE);
    CHECK_EQ(s.committed, 16 * PAGE);
    /* Reserving is free of charge; committing is not. */
    char *r = vm_alloc(p, 4 * PAGE, MEM_RESERVE, RW);
    CHECK_FAILS(pa_virtual_alloc(p, r, PAGE, MEM_COMMIT, RW, APP), ERROR_COMMITMENT_LIMIT);
    void *base = r;
    size_t size = PAGE;
    CHECK_EQ(pa_nt_allocate_virtual_memory(p, &base, &size, MEM_COMMIT, RW, APP),
             STATUS_COMMITMENT_LIMIT);
    CHECK_REGION(p, r, r, RW, 4 * PAGE, MEM_RESERVE, 0);
    /* Re-committing committed pages charges nothing. */
    CHECK_EQ(pa_virtual_alloc(p, a, 16 * PAGE, MEM_COMMIT, RO, APP), a);
    /* Decommitting makes room, for exactly as many pages. */
    CHECK(pa_virtual_free(p, a, 2 * PAGE, MEM_DECOMMIT, APP));
    CHECK_FAILS(pa_virtual_alloc(p, r, 3 * PAGE, MEM_COMMIT, RW, APP), ERROR_COMMITMENT_LIMIT);
    CHECK_REGION(p, r, r, RW, 4 * PAGE, MEM_RESERVE, 0);
    CHECK_EQ(pa_virtual_alloc(p, r, 2 * PAGE, MEM_COMMIT, RW, APP), r);
    CHECK_FAILS(pa_virtual_alloc(p, a, PAGE, MEM_COMMIT, RW, APP), ERROR_COMMITMENT_LIMIT);
    s = vm_stats(p);
    CHECK_EQ(s.committed, 16 * PAGE);
    CHECK_EQ(s.peak_committed, 16 * PAGE);
    vm_release(p, a);
    vm_release(p, r);
    VM_END(p);

    /* The limit is rounded up to a page. */
    p = vm_new(0, PAGE + 1);
    CHECK_EQ(vm_stats(p).commit_limit, 2 * PAGE);
    a = vm_alloc(p, 2 * PAGE, MEM_COMMIT, RW);
    CHECK_FAILS(pa_virtual_alloc(p, NULL, 1, MEM_COMMIT, RW, APP), ERROR_COMMITMENT_LIMIT);
    vm_release(p, a);
    VM_END(p);
}

TEST(status_table_maps_the_reference_pairs)
{
    /* err: the NTSTATUS -> Win32 pairs of section 0. */
    static const struct {
        NTSTATUS st;
        DWORD gle;
    } pairs[] = {
        {STATUS_INVALID_PARAMETER, 87},      {STATUS_INVALID_PAGE_PROTECTION, 87},
        {STATUS_UNABLE_TO_FREE_VM, 87},      {STATUS_WORKING_SET_LIMIT_RANGE, 87},
        {STATUS_CONFLICTING_ADDRESSES, 487}, {STATUS_NOT_MAPPED_VIEW, 487},
        {STATUS_NOT_COMMITTED, 487},         {STATUS_FREE_VM_NOT_AT_BASE, 487},
        {STATUS_MEMORY_NOT_ALLOCATED, 487},  {STATUS_NO_MEMORY, 8},
        {STATUS_SECTION_TOO_BIG, 8},         {STATUS_ACCESS_VIOLATION, 998},
        {STATUS_ACCESS_DENIED, 5},           {STATUS_ALREADY_COMMITTED, 5},
        {STATUS_INVALID_VIEW_SIZE, 5},       {STATUS_MAPPED_ALIGNMENT, 1132},
        {STATUS_MAPPED_FILE_SIZE_ZERO, 1006}, {STATUS_INFO_LENGTH_MISMATCH, 24},
        {STATUS_INVALID_HANDLE, 6},          {STATUS_NOT_SUPPORTED, 50},
        {STATUS_PRIVILEGE_NOT_HELD, 1314},   {STATUS_COMMITMENT_LIMIT, 1455},
        {STATUS_SUCCESS, 0},                 {PA_STATUS_OWNED, ERROR_ACCESS_DENIED},
        {PA_STATUS_BUFFER_EXPORTED, PA_ERROR_BUFFER_EXPORTED},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
        CHECK_EQ(pa_nt_status_to_dos_error(pairs[i].st), pairs[i].gle);
    CHECK(strcmp(pa_error_name(487), "ERROR_INVALID_ADDRESS") == 0);
    CHECK(strcmp(pa_error_message(487), "Attempt to access invalid address.") == 0);
    CHECK(pa_error_name(1111) == NULL); /* no ERROR_INVALID_PAGE_PROTECTION (section 0) */
    SetLastError(1234);
    CHECK_EQ(GetLastError(), 1234);
}

CTEST_MAIN()
