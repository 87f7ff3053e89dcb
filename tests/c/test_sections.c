/* test_sections.c: sections as a C program meets them, through pyalloc/windows.h on the current
 * process (CreateFileMappingA, OpenFileMappingA, MapViewOfFile[Ex], UnmapViewOfFile,
 * FlushViewOfFile, CloseHandle; files come in through pa_nt_file_handle), with direct loads and
 * stores: copy-on-write copies are made by the SIGSEGV handler, SEC_RESERVE commits are
 * section-wide. Facts are numbered as in ../shared/reference/virtual-memory.md (84-110, 47, 59);
 * the Python tests (tests/test_sections.py) cover the rest of the matrix.
 */
#include "vmtest.h" /* first: it sets _GNU_SOURCE */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyalloc/windows.h"

#define RW PAGE_READWRITE
#define RO PAGE_READONLY
#define WC PAGE_WRITECOPY

__attribute__((constructor)) static void install_catcher(void) { vm_install_av_catcher(); }

static pa_process_t *cur(void) { return pa_process_current(); }

/* A name no other test or run uses. */
static const char *unique_name(char *buf, size_t cap, const char *tag)
{
    static int counter;
    snprintf(buf, cap, "pyalloc-ctest-%s-%ld-%d", tag, (long)getpid(), ++counter);
    return buf;
}

/* A temporary file of n bytes of `fill`, opened with `flags`; its path is unlinked at once. */
static int temp_file(size_t n, int fill, int flags)
{
    char path[] = "/tmp/pyalloc-sections-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) abort();
    char buf[4096];
    memset(buf, fill, sizeof buf);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        CHECK_EQ(write(fd, buf, k), k);
        done += k;
    }
    int again = open(path, flags);
    CHECK(again >= 0);
    close(fd);
    unlink(path);
    return again;
}

static HANDLE file_handle(int fd)
{
    HANDLE h = NULL;
    CHECK_EQ(pa_nt_file_handle(fd, &h), STATUS_SUCCESS);
    return h;
}

static uint64_t section_size(HANDLE h)
{
    uint64_t size = 0;
    CHECK_EQ(pa_nt_query_section(h, &size, NULL, NULL), STATUS_SUCCESS);
    return size;
}

static HANDLE pagefile(DWORD protect, DWORD size, const char *name)
{
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, protect, 0, size, name);
    CHECK(h != NULL);
    return h;
}

static char *map(HANDLE h, DWORD access, DWORD offset, SIZE_T size)
{
    char *v = MapViewOfFile(h, access, 0, offset, size);
    CHECK(v != NULL);
    return v;
}

/* ---- 1.11 CreateFileMapping ----------------------------------------------------------------- */

TEST(fact84_fact86_fact87_create_file_mapping_parameters)
{
    /* kbsync:CreateFileMappingW, k32:test_CreateFileMapping(_protection). */
    CHECK_FAILS(CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, RW, 0, 0, NULL),
                ERROR_INVALID_PARAMETER);
    const DWORD bad[] = {0, PAGE_NOACCESS, PAGE_EXECUTE, RO | RW, RW | PAGE_GUARD};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_FAILS(CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, bad[i], 0, 0x1000, NULL),
                    ERROR_INVALID_PARAMETER);
    CHECK_FAILS(CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, RW | SEC_RESERVE | SEC_COMMIT, 0,
                                   0x1000, NULL),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, RW | SEC_IMAGE, 0, 0x1000, NULL),
                ERROR_BAD_EXE_FORMAT);
    pa_set_last_error(0xDEAD);
    HANDLE h = pagefile(RW, 0x3452, NULL);
    CHECK_EQ(GetLastError(), ERROR_SUCCESS);
    CHECK_EQ(section_size(h), 0x4000); /* fact 88 */
    CHECK(CloseHandle(h));
    CHECK_FAILS(CloseHandle(h), ERROR_INVALID_HANDLE);
}

TEST(fact88_fact89_fact90_file_sections)
{
    /* k32:test_MapViewOfFile, k32:test_mapping, srv:create_mapping. */
    int fd = temp_file(36, 'x', O_RDWR);
    HANDLE hf = file_handle(fd);
    HANDLE h = CreateFileMappingA(hf, NULL, RW, 0, 0, NULL);
    CHECK_EQ(section_size(h), 36); /* the exact byte size */
    CHECK(CloseHandle(h));
    h = CreateFileMappingA(hf, NULL, RW, 0, 0x12345, NULL); /* writable and larger: grows */
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK_EQ(st.st_size, 0x12345);
    CHECK(CloseHandle(h));
    CHECK(CloseHandle(hf));
    close(fd);

    fd = temp_file(100, 'y', O_RDONLY);
    hf = file_handle(fd);
    CHECK_FAILS(CreateFileMappingA(hf, NULL, RW, 0, 0, NULL), ERROR_ACCESS_DENIED);
    CHECK_FAILS(CreateFileMappingA(hf, NULL, RO, 0, 0x2000, NULL), ERROR_NOT_ENOUGH_MEMORY);
    h = CreateFileMappingA(hf, NULL, WC, 0, 0, NULL);
    CHECK(h != NULL);
    CHECK(CloseHandle(h));
    CHECK(CloseHandle(hf));
    close(fd);

    fd = temp_file(0, 0, O_RDWR);
    hf = file_handle(fd);
    CHECK_FAILS(CreateFileMappingA(hf, NULL, RW, 0, 0, NULL), ERROR_FILE_INVALID);
    CHECK(CloseHandle(hf));
    close(fd);
    CHECK_FAILS(CreateFileMappingA(hf, NULL, RW, 0, 0, NULL), ERROR_INVALID_HANDLE);
}

TEST(fact85_fact91_named_sections)
{
    /* k32:test_CreateFileMapping, k32:test_MapViewOfFile. */
    char name[96], upper[96];
    unique_name(name, sizeof name, "named");
    snprintf(upper, sizeof upper, "%s", name);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    pa_set_last_error(0xDEAD);
    HANDLE h1 = pagefile(RW, 0x10000, name);
    CHECK_EQ(GetLastError(), ERROR_SUCCESS);
    HANDLE h2 = pagefile(RW, 0x30000, name);
    CHECK_EQ(GetLastError(), ERROR_ALREADY_EXISTS);
    CHECK_EQ(section_size(h2), 0x10000); /* the new size is ignored */
    CHECK_FAILS(OpenFileMappingA(FILE_MAP_READ, FALSE, upper), ERROR_FILE_NOT_FOUND);
    HANDLE h3 = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
    CHECK(h3 != NULL);
    char *w = map(h1, FILE_MAP_WRITE, 0, 0);
    char *r = map(h3, FILE_MAP_READ, 0, 0);
    vm_store(w + 0x100, 0x42);
    CHECK_EQ(vm_load(r + 0x100), 0x42);
    MEMORY_BASIC_INFORMATION before = vm_query(cur(), w);
    CHECK(CloseHandle(h1));
    CHECK(CloseHandle(h2));
    CHECK(CloseHandle(h3));
    /* Every handle closed: the views live on, the name is gone. */
    MEMORY_BASIC_INFORMATION after = vm_query(cur(), w);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_EQ(vm_load(r + 0x100), 0x42);
    vm_store(w + 0xFFFF, 1);
    CHECK_FAILS(OpenFileMappingA(FILE_MAP_READ, FALSE, name), ERROR_FILE_NOT_FOUND);
    pa_set_last_error(0xDEAD);
    HANDLE fresh = pagefile(RW, 0x10000, name);
    CHECK_EQ(GetLastError(), ERROR_SUCCESS);
    char *f = map(fresh, FILE_MAP_READ, 0, 0);
    CHECK_EQ(vm_load(f + 0x100), 0);
    CHECK(UnmapViewOfFile(f));
    CHECK(CloseHandle(fresh));
    CHECK(UnmapViewOfFile(w));
    CHECK(UnmapViewOfFile(r));
}

/* ---- 1.12 MapViewOfFile and views ----------------------------------------------------------- */

TEST(fact92_fact95_view_protection_table)
{
    /* nt:test_NtMapViewOfSection, k32:test_mapping (view table), kb:MapViewOfFileEx. */
    static const struct { DWORD access, prot; } table[] = {
        {0, PAGE_NOACCESS},
        {FILE_MAP_COPY, WC},
        {FILE_MAP_WRITE, RW},
        {FILE_MAP_WRITE | FILE_MAP_COPY, RW},
        {FILE_MAP_READ, RO},
        {FILE_MAP_READ | FILE_MAP_COPY, RO},
        {SECTION_MAP_EXECUTE | FILE_MAP_COPY, PAGE_NOACCESS},
        {FILE_MAP_EXECUTE, PAGE_NOACCESS},
        {FILE_MAP_EXECUTE | FILE_MAP_COPY, PAGE_EXECUTE_WRITECOPY},
        {FILE_MAP_EXECUTE | FILE_MAP_READ, PAGE_EXECUTE_READ},
        {FILE_MAP_EXECUTE | FILE_MAP_WRITE, PAGE_EXECUTE_READWRITE},
        {FILE_MAP_ALL_ACCESS, RW},
    };
    HANDLE h = pagefile(PAGE_EXECUTE_READWRITE, 0x10000, NULL);
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        char *v = map(h, table[i].access, 0, 0x2345);
        CHECK_EQ((uintptr_t)v & 0xFFFF, 0);
        CHECK_VQ(cur(), v, v, v, table[i].prot, 0x3000, MEM_COMMIT, table[i].prot, MEM_MAPPED);
        CHECK(UnmapViewOfFile(v));
    }
    CHECK(CloseHandle(h));
}

TEST(fact93_fact94_fact96_bad_views_fail_with_windows_codes)
{
    /* nt:test_NtMapViewOfSection, k32:test_MapViewOfFile, k32:test_mapping. */
    HANDLE h = pagefile(RW, 0x40000, NULL);
    HANDLE ro = pagefile(RO, 0x10000, NULL);
    char *v = map(h, FILE_MAP_WRITE, 0, 0x20000);
    pa_vm_stats_t before = vm_stats(cur());
    CHECK_FAILS(MapViewOfFile(h, FILE_MAP_READ, 0, 0x1000, 0), ERROR_MAPPED_ALIGNMENT);
    CHECK_FAILS(MapViewOfFileEx(h, FILE_MAP_READ, 0, 0, 0x1000, v + 0x40000 + 42),
                ERROR_MAPPED_ALIGNMENT);
    CHECK_FAILS(MapViewOfFileEx(h, FILE_MAP_READ, 0, 0, 0x1000, v + 0x41000),
                ERROR_MAPPED_ALIGNMENT);
    CHECK_FAILS(MapViewOfFileEx(h, FILE_MAP_READ, 0, 0, 0x1000, v + 0x10000),
                ERROR_INVALID_ADDRESS);
    CHECK_FAILS(MapViewOfFile(h, FILE_MAP_READ, 0, 0x10000, 0x30001), ERROR_ACCESS_DENIED);
    CHECK_FAILS(MapViewOfFile(h, FILE_MAP_READ, 0, 0x40000, 0), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(MapViewOfFile(ro, FILE_MAP_WRITE, 0, 0, 0), ERROR_ACCESS_DENIED);
    CHECK_FAILS(VirtualFree(v, 0x10000, MEM_DECOMMIT), ERROR_INVALID_PARAMETER); /* fact 47 */
    CHECK_FAILS(VirtualFree(v, 0, MEM_RELEASE), ERROR_INVALID_PARAMETER);
    DWORD old;
    CHECK_FAILS(VirtualProtect(v, 0x1000, PAGE_EXECUTE_READ, &old), ERROR_INVALID_PARAMETER);
    char *priv = VirtualAlloc(NULL, 0x1000, MEM_COMMIT, RW);
    CHECK_FAILS(UnmapViewOfFile(priv), ERROR_INVALID_ADDRESS);
    CHECK(VirtualFree(priv, 0, MEM_RELEASE));
    pa_vm_stats_t after = vm_stats(cur());
    CHECK_EQ(after.allocations, before.allocations);
    CHECK_EQ(after.reserved, before.reserved);
    char *at = MapViewOfFileEx(h, FILE_MAP_READ, 0, 0x10000, 0x1000, v + 0x40000);
    CHECK_EQ(at, v + 0x40000);
    vm_store(v + 0x10000, 7);
    CHECK_EQ(vm_load(at), 7);
    CHECK(UnmapViewOfFile(at));
    CHECK(UnmapViewOfFile(v));
    CHECK(CloseHandle(h));
    CHECK(CloseHandle(ro));
    CHECK_FAILS(MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0), ERROR_INVALID_HANDLE);
}

TEST(fact97_fact98_sec_reserve_commit_is_section_wide)
{
    /* k32:test_MapViewOfFile: two views of a SEC_RESERVE section; a commit through one shows in
     * the other (with its own view protection), in another process, and to direct stores. */
    HANDLE h = pagefile(RW | SEC_RESERVE, 0x100000, NULL);
    char *v1 = map(h, FILE_MAP_WRITE, 0, 0);
    char *v2 = map(h, FILE_MAP_WRITE, 0, 0);
    CHECK_VQ(cur(), v1, v1, v1, RW, 0x100000, MEM_RESERVE, 0, MEM_MAPPED);
    CHECK_VQ(cur(), v2, v2, v2, RW, 0x100000, MEM_RESERVE, 0, MEM_MAPPED);
    VM_EXPECT_AV(vm_store(v2 + 5, 1), v2 + 5);
    VM_EXPECT_AV(vm_load(v1 + 0x20000), v1 + 0x20000);
    pa_process_t *other = vm_new(16 * MiB, 0);
    char *ov = pa_map_view_of_file(other, h, FILE_MAP_WRITE, 0, 0, NULL);
    CHECK(ov != NULL);
    CHECK_EQ(VirtualAlloc(v1, 0x10000, MEM_COMMIT, RO), v1);
    CHECK_VQ(cur(), v1, v1, v1, RW, 0x10000, MEM_COMMIT, RO, MEM_MAPPED);
    CHECK_VQ(cur(), v2, v2, v2, RW, 0x10000, MEM_COMMIT, RW, MEM_MAPPED);
    CHECK_VQ(other, ov, ov, ov, RW, 0x10000, MEM_COMMIT, RW, MEM_MAPPED);
    CHECK_VQ(cur(), v2 + 0x10000, v2 + 0x10000, v2, RW, 0xF0000, MEM_RESERVE, 0, MEM_MAPPED);
    /* Direct stores through the views that may write; the read-only one faults. */
    vm_store(v2 + 0x10, 0x5A);
    CHECK_EQ(vm_load(v1 + 0x10), 0x5A);
    CHECK_EQ(vm_load(ov + 0x10), 0x5A);
    vm_store(ov + 0xFFFF, 0xA5);
    CHECK_EQ(vm_load(v2 + 0xFFFF), 0xA5);
    VM_EXPECT_AV(vm_store(v1 + 0x10, 1), v1 + 0x10);
    /* A commit from the other process, seen here by a direct load without any query first. */
    CHECK(pa_virtual_alloc(other, ov + 0x80000, 0x1000, MEM_COMMIT, RW, PA_OWNER_APP) != NULL);
    vm_store(ov + 0x80000, 0x77);
    CHECK_EQ(vm_load(v1 + 0x80000), 0x77);
    vm_store(v2 + 0x80001, 0x78);
    CHECK_EQ(vm_load(ov + 0x80001), 0x78);
    CHECK(pa_unmap_view_of_file(other, ov));
    VM_END(other);
    CHECK(UnmapViewOfFile(v1));
    CHECK(UnmapViewOfFile(v2));
    CHECK(CloseHandle(h));
}

TEST(fact59_fact96_fact105_access_violations_on_views)
{
    /* A store into a FILE_MAP_READ view faults; VirtualProtect within the view's access works
     * (fact 59); after UnmapViewOfFile the range is free and faults (fact 105). */
    HANDLE h = pagefile(RW, 0x20000, NULL);
    char *r = map(h, FILE_MAP_READ, 0, 0);
    char *n = map(h, 0, 0, 0);
    VM_EXPECT_AV(vm_store(r + 3, 1), r + 3);
    VM_EXPECT_AV(vm_load(n + 0x1234), n + 0x1234);
    DWORD old = 0;
    CHECK_FAILS(VirtualProtect(r, 0x1000, RW, &old), ERROR_INVALID_PARAMETER);
    CHECK(VirtualProtect(r, 0x1000, WC, &old));
    CHECK_EQ(old, RO);
    vm_store(r + 3, 9); /* now copy-on-write: a private copy */
    CHECK_EQ(vm_load(r + 3), 9);
    char *w = map(h, FILE_MAP_WRITE, 0, 0);
    CHECK_EQ(vm_load(w + 3), 0);
    CHECK(UnmapViewOfFile(r));
    VM_EXPECT_AV(vm_load(r + 3), r + 3);
    MEMORY_BASIC_INFORMATION m = vm_query(cur(), r + 0x1000);
    CHECK_EQ(m.BaseAddress, r + 0x1000);
    CHECK_EQ(m.AllocationBase, 0);
    CHECK_EQ(m.AllocationProtect, 0);
    CHECK(m.RegionSize >= 0x1F000);
    CHECK_EQ(m.State, MEM_FREE);
    CHECK_EQ(m.Protect, PAGE_NOACCESS);
    CHECK_EQ(m.Type, 0);
    CHECK_FAILS(UnmapViewOfFile(r), ERROR_INVALID_ADDRESS);
    CHECK(UnmapViewOfFile(n));
    CHECK(UnmapViewOfFile(w));
    CHECK(CloseHandle(h));
}

/* ---- 1.14 copy-on-write --------------------------------------------------------------------- */

TEST(fact106_fact109_copy_on_write_by_direct_stores)
{
    /* k32:test_shared_memory_ro, k32:test_mapping: the first store into a FILE_MAP_COPY view
     * page faults, the handler makes the page private and writable, the store is retried. */
    HANDLE h = pagefile(RW, 0x10000, NULL);
    char *shared = map(h, FILE_MAP_WRITE, 0, 0);
    char *cow = map(h, FILE_MAP_COPY, 0, 0x3000);
    CHECK_VQ(cur(), cow, cow, cow, WC, 0x3000, MEM_COMMIT, WC, MEM_MAPPED);
    vm_store(shared + 0x1005, 'a');
    CHECK_EQ(vm_load(cow + 0x1005), 'a'); /* untouched copy pages follow the section */
    vm_store(cow + 0x1005, 'x');
    CHECK_EQ(vm_load(cow + 0x1005), 'x');
    CHECK_EQ(vm_load(shared + 0x1005), 'a');
    CHECK_VQ(cur(), cow, cow, cow, WC, 0x1000, MEM_COMMIT, WC, MEM_MAPPED);
    CHECK_VQ(cur(), cow + 0x1000, cow + 0x1000, cow, WC, 0x1000, MEM_COMMIT, RW, MEM_MAPPED);
    CHECK_VQ(cur(), cow + 0x2000, cow + 0x2000, cow, WC, 0x1000, MEM_COMMIT, WC, MEM_MAPPED);
    /* The copied page no longer follows the section; the others still do. */
    vm_store(shared + 0x1006, 'b');
    vm_store(shared + 0x2000, 'c');
    CHECK_EQ(vm_load(cow + 0x1006), 0);
    CHECK_EQ(vm_load(cow + 0x2000), 'c');
    /* FILE_MAP_COPY|FILE_MAP_WRITE is a shared write view. */
    char *both = map(h, FILE_MAP_COPY | FILE_MAP_WRITE, 0, 0);
    vm_store(both + 0x10, 'd');
    CHECK_EQ(vm_load(shared + 0x10), 'd');
    CHECK(UnmapViewOfFile(both));
    CHECK(UnmapViewOfFile(cow));
    CHECK(UnmapViewOfFile(shared));
    CHECK(CloseHandle(h));
}

TEST(fact108_writecopy_on_a_shared_file_view_leaves_the_file_alone)
{
    /* k32:test_mappings: VirtualProtect(PAGE_WRITECOPY) on a shared read/write file view, then
     * a direct store: the file is not modified, after FlushViewOfFile and after closing. */
    int fd = temp_file(0x2000, 'A', O_RDWR);
    HANDLE hf = file_handle(fd);
    HANDLE h = CreateFileMappingA(hf, NULL, RW, 0, 0, NULL);
    CHECK(h != NULL);
    CHECK(CloseHandle(hf));
    char *v = map(h, FILE_MAP_WRITE, 0, 0);
    DWORD old = 0;
    CHECK(VirtualProtect(v, 0x1000, WC, &old));
    CHECK_EQ(old, RW);
    vm_store(v + 3, 'Z');
    CHECK_EQ(vm_load(v + 3), 'Z');
    CHECK_VQ(cur(), v, v, v, RW, 0x2000, MEM_COMMIT, RW, MEM_MAPPED);
    vm_store(v + 0x1003, 'S'); /* the second page is still shared */
    CHECK(FlushViewOfFile(v, 0));
    char buf[8];
    CHECK_EQ(pread(fd, buf, 1, 3), 1);
    CHECK_EQ(buf[0], 'A');
    CHECK_EQ(pread(fd, buf, 1, 0x1003), 1);
    CHECK_EQ(buf[0], 'S');
    /* A view of a file also takes a private copy under FILE_MAP_COPY. */
    char *c = map(h, FILE_MAP_COPY, 0, 0);
    vm_store(c + 0x1003, 'C');
    CHECK(FlushViewOfFile(c, 0));
    CHECK(UnmapViewOfFile(c));
    CHECK(UnmapViewOfFile(v));
    CHECK(CloseHandle(h));
    CHECK_EQ(pread(fd, buf, 1, 3), 1);
    CHECK_EQ(buf[0], 'A');
    CHECK_EQ(pread(fd, buf, 1, 0x1003), 1);
    CHECK_EQ(buf[0], 'S');
    close(fd);
}

TEST(fact99_fact100_commit_on_views)
{
    /* k32:test_MapViewOfFile, k32:test_CreateFileMapping_protection: MEM_COMMIT on a file view
     * -> 5 whatever the protection; on a pagefile view it changes the protection within the
     * view's access, PAGE_WRITECOPY included (then stores stay private). */
    int fd = temp_file(0x1000, 'f', O_RDWR);
    HANDLE hf = file_handle(fd);
    HANDLE h = CreateFileMappingA(hf, NULL, RW, 0, 0, NULL);
    char *fv = map(h, FILE_MAP_WRITE, 0, 0);
    const DWORD prots[] = {RO, RW, WC, PAGE_NOACCESS};
    for (size_t i = 0; i < sizeof prots / sizeof *prots; i++)
        CHECK_FAILS(VirtualAlloc(fv, 0x1000, MEM_COMMIT, prots[i]), ERROR_ACCESS_DENIED);
    CHECK(UnmapViewOfFile(fv));
    CHECK(CloseHandle(h));
    CHECK(CloseHandle(hf));
    close(fd);

    HANDLE p = pagefile(RW, 0x10000, NULL);
    char *v = map(p, FILE_MAP_WRITE, 0, 0);
    char *r = map(p, FILE_MAP_READ, 0, 0);
    CHECK_FAILS(VirtualAlloc(r, 0x1000, MEM_COMMIT, RW), ERROR_INVALID_PARAMETER);
    CHECK_EQ(VirtualAlloc(v, 0x1000, MEM_COMMIT, WC), v);
    CHECK_VQ(cur(), v, v, v, RW, 0x1000, MEM_COMMIT, WC, MEM_MAPPED);
    vm_store(v, 'p');
    CHECK_EQ(vm_load(r), 0);
    vm_store(v + 0x1000, 's');
    CHECK_EQ(vm_load(r + 0x1000), 's');
    /* fact 110: not for private memory. */
    CHECK_FAILS(VirtualAlloc(NULL, 0x1000, MEM_COMMIT, WC), ERROR_INVALID_PARAMETER);
    CHECK(UnmapViewOfFile(v));
    CHECK(UnmapViewOfFile(r));
    CHECK(CloseHandle(p));
}

CTEST_MAIN()
