/* virtual.c: layer 2, the VirtualAlloc family.
 *
 * Win32 semantics over the memory manager (mm.c): argument checks that kernel32 makes before
 * calling ntdll, the NTSTATUS -> last-error translation, and Win32 return conventions (NULL,
 * FALSE, 0 or (UINT)-1 with the last error set). The second half gives the same functions
 * Windows' names and prototypes (pyalloc/windows.h), acting on the current process.
 */
#include <string.h>

#include "internal.h"
#include "os/os.h"
#include "pyalloc/windows.h"

static int fail(NTSTATUS status)
{
    _pa_set_last_status(status);
    return 0;
}

LPVOID pa_virtual_alloc(pa_process_t *p, LPVOID address, SIZE_T size, DWORD type, DWORD protect,
                        pa_owner_t owner)
{
    /* The process plays the handle of VirtualAllocEx: none is STATUS_INVALID_HANDLE, GLE 6
     * (k32:test_VirtualAllocEx, fact 15). */
    if (!p) return fail(STATUS_INVALID_HANDLE), NULL;
    void *base = address;
    size_t len = size;
    NTSTATUS st = pa_nt_allocate_virtual_memory(p, &base, &len, type, protect, owner);
    /* kernel32 fails on any status but success, informational ones included. */
    if (st != STATUS_SUCCESS) return fail(st), NULL;
    return base;
}

BOOL pa_virtual_free(pa_process_t *p, LPVOID address, SIZE_T size, DWORD free_type,
                     pa_owner_t owner)
{
    /* kernel32 rejects MEM_RELEASE with a size before ntdll sees it (k32:test_VirtualAlloc). */
    if (free_type == MEM_RELEASE && size != 0) return fail(STATUS_INVALID_PARAMETER);
    if (!p) return fail(STATUS_INVALID_HANDLE); /* fact 15 */
    void *base = address;
    size_t len = size;
    NTSTATUS st = pa_nt_free_virtual_memory(p, &base, &len, free_type, owner);
    return st == STATUS_SUCCESS ? TRUE : fail(st);
}

BOOL pa_virtual_protect(pa_process_t *p, LPVOID address, SIZE_T size, DWORD protect,
                        PDWORD old_protect, pa_owner_t owner)
{
    if (!p) return fail(STATUS_INVALID_HANDLE); /* as VirtualProtectEx */
    void *base = address;
    size_t len = size;
    NTSTATUS st = pa_nt_protect_virtual_memory(p, &base, &len, protect, old_protect, owner);
    return st == STATUS_SUCCESS ? TRUE : fail(st);
}

SIZE_T pa_virtual_query(pa_process_t *p, LPCVOID address, PMEMORY_BASIC_INFORMATION mbi,
                        SIZE_T length)
{
    if (!p) return fail(STATUS_INVALID_HANDLE); /* as VirtualQueryEx */
    if (length < sizeof *mbi) return fail(STATUS_INFO_LENGTH_MISMATCH);
    if (!mbi) return fail(STATUS_ACCESS_VIOLATION);
    NTSTATUS st = pa_nt_query_virtual_memory(p, address, mbi);
    return st == STATUS_SUCCESS ? sizeof *mbi : (SIZE_T)fail(st);
}

void pa_get_system_info(pa_process_t *p, LPSYSTEM_INFO info)
{
    memset(info, 0, sizeof *info);
#if defined(__aarch64__)
    info->wProcessorArchitecture = PROCESSOR_ARCHITECTURE_ARM64;
#else
    info->wProcessorArchitecture = PROCESSOR_ARCHITECTURE_AMD64;
    info->dwProcessorType = PROCESSOR_AMD_X8664;
#endif
    info->dwPageSize = (DWORD)PA_PAGE_SIZE;
    info->lpMinimumApplicationAddress = (void *)pa_process_min_address(p);
    info->lpMaximumApplicationAddress = (void *)pa_process_max_address(p);
    unsigned n = _pa_os_ncpu();
    info->dwNumberOfProcessors = n;
    info->dwActiveProcessorMask = n >= 8 * sizeof(DWORD_PTR) ? ~(DWORD_PTR)0
                                                             : ((DWORD_PTR)1 << n) - 1;
    info->dwAllocationGranularity = (DWORD)PA_GRANULARITY;
    info->wProcessorLevel = 6;
}

UINT pa_get_write_watch(pa_process_t *p, DWORD flags, PVOID base, SIZE_T size, PVOID *addresses,
                        ULONG_PTR *count, PULONG granularity)
{
    NTSTATUS st = pa_nt_get_write_watch(p, flags, base, size, addresses, count, granularity);
    return st == STATUS_SUCCESS ? 0 : (fail(st), ~0u);
}

UINT pa_reset_write_watch(pa_process_t *p, LPVOID base, SIZE_T size)
{
    NTSTATUS st = pa_nt_reset_write_watch(p, base, size);
    return st == STATUS_SUCCESS ? 0 : (fail(st), ~0u);
}

/* ---- Windows' names, on the current process (pyalloc/windows.h) ---- */

LPVOID VirtualAlloc(LPVOID address, SIZE_T size, DWORD type, DWORD protect)
{
    return pa_virtual_alloc(pa_process_current(), address, size, type, protect, PA_OWNER_APP);
}

BOOL VirtualFree(LPVOID address, SIZE_T size, DWORD free_type)
{
    return pa_virtual_free(pa_process_current(), address, size, free_type, PA_OWNER_ANY);
}

BOOL VirtualProtect(LPVOID address, SIZE_T size, DWORD protect, PDWORD old_protect)
{
    return pa_virtual_protect(pa_process_current(), address, size, protect, old_protect,
                              PA_OWNER_ANY);
}

SIZE_T VirtualQuery(LPCVOID address, PMEMORY_BASIC_INFORMATION mbi, SIZE_T length)
{
    return pa_virtual_query(pa_process_current(), address, mbi, length);
}

void GetSystemInfo(LPSYSTEM_INFO info) { pa_get_system_info(pa_process_current(), info); }

UINT GetWriteWatch(DWORD flags, PVOID base, SIZE_T size, PVOID *addresses, ULONG_PTR *count,
                   PULONG granularity)
{
    return pa_get_write_watch(pa_process_current(), flags, base, size, addresses, count,
                              granularity);
}

UINT ResetWriteWatch(LPVOID base, SIZE_T size)
{
    return pa_reset_write_watch(pa_process_current(), base, size);
}

DWORD GetLastError(void) { return pa_get_last_error(); }
void SetLastError(DWORD code) { pa_set_last_error(code); }
