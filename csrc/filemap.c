/* filemap.c: layer 2, CreateFileMapping and MapViewOfFile.
 *
 * Win32 semantics over the sections of layer 1 (section.c, mm.c): the protection and SEC_*
 * bits of CreateFileMapping's flProtect, FILE_MAP_* access turned into a view protection
 * (fact 95), ERROR_ALREADY_EXISTS for an existing name, and the NTSTATUS -> last-error
 * translation. The second half gives them Windows' names on the current process.
 */
#include "internal.h"
#include "pyalloc/windows.h"

#define SEC_MASK 0xFF800000u

static int fail(NTSTATUS status)
{
    _pa_set_last_status(status);
    return 0;
}

HANDLE pa_create_file_mapping(HANDLE file, DWORD protect, uint64_t max_size, const char *name)
{
    HANDLE h = NULL;
    int existed = 0;
    NTSTATUS st = pa_nt_create_section(&h, FILE_MAP_ALL_ACCESS, max_size, protect & ~SEC_MASK,
                                       protect & SEC_MASK, file, name, &existed);
    if (st != STATUS_SUCCESS) return fail(st), NULL;
    /* Success sets the last error: 0, or ERROR_ALREADY_EXISTS (fact 85). */
    pa_set_last_error(existed ? ERROR_ALREADY_EXISTS : ERROR_SUCCESS);
    return h;
}

HANDLE pa_open_file_mapping(DWORD access, const char *name)
{
    HANDLE h = NULL;
    /* Copy-on-write views need read rights only (kb:OpenFileMappingW; fact 96). */
    if (access == FILE_MAP_COPY) access = SECTION_MAP_READ;
    NTSTATUS st = pa_nt_open_section(&h, access, name);
    return st == STATUS_SUCCESS ? h : (fail(st), NULL);
}

/* FILE_MAP_* access -> the view's page protection (k32:test_mapping, kb:MapViewOfFileEx,
 * fact 95). FILE_MAP_COPY counts only when it is the only bit besides FILE_MAP_EXECUTE. */
static DWORD view_protect(DWORD access)
{
    int exec = (access & FILE_MAP_EXECUTE) != 0;
    access &= ~(DWORD)FILE_MAP_EXECUTE;
    if (access == FILE_MAP_COPY) return exec ? PAGE_EXECUTE_WRITECOPY : PAGE_WRITECOPY;
    if (access & FILE_MAP_WRITE) return exec ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
    if (access & FILE_MAP_READ) return exec ? PAGE_EXECUTE_READ : PAGE_READONLY;
    return PAGE_NOACCESS;
}

LPVOID pa_map_view_of_file(pa_process_t *p, HANDLE mapping, DWORD access, uint64_t offset,
                           SIZE_T size, LPVOID base)
{
    void *b = base;
    size_t len = size;
    NTSTATUS st = pa_nt_map_view_of_section(mapping, p, &b, offset, &len, view_protect(access));
    return st == STATUS_SUCCESS ? b : (fail(st), NULL);
}

BOOL pa_unmap_view_of_file(pa_process_t *p, LPCVOID address)
{
    NTSTATUS st = pa_nt_unmap_view_of_section(p, (void *)address);
    return st == STATUS_SUCCESS ? TRUE : fail(st);
}

BOOL pa_flush_view_of_file(pa_process_t *p, LPCVOID address, SIZE_T size)
{
    NTSTATUS st = pa_nt_flush_virtual_memory(p, (void *)address, size);
    return st == STATUS_SUCCESS ? TRUE : fail(st);
}

BOOL pa_close_handle(HANDLE handle)
{
    NTSTATUS st = pa_nt_close(handle);
    return st == STATUS_SUCCESS ? TRUE : fail(st);
}

/* ---- Windows' names, on the current process (pyalloc/windows.h) ---- */

HANDLE CreateFileMappingA(HANDLE file, LPSECURITY_ATTRIBUTES attributes, DWORD protect,
                          DWORD size_high, DWORD size_low, LPCSTR name)
{
    (void)attributes;
    return pa_create_file_mapping(file, protect, ((uint64_t)size_high << 32) | size_low, name);
}

HANDLE OpenFileMappingA(DWORD access, BOOL inherit, LPCSTR name)
{
    (void)inherit;
    return pa_open_file_mapping(access, name);
}

LPVOID MapViewOfFile(HANDLE mapping, DWORD access, DWORD offset_high, DWORD offset_low,
                     SIZE_T size)
{
    return MapViewOfFileEx(mapping, access, offset_high, offset_low, size, NULL);
}

LPVOID MapViewOfFileEx(HANDLE mapping, DWORD access, DWORD offset_high, DWORD offset_low,
                       SIZE_T size, LPVOID base)
{
    return pa_map_view_of_file(pa_process_current(), mapping, access,
                               ((uint64_t)offset_high << 32) | offset_low, size, base);
}

BOOL UnmapViewOfFile(LPCVOID address)
{
    return pa_unmap_view_of_file(pa_process_current(), address);
}

BOOL FlushViewOfFile(LPCVOID address, SIZE_T size)
{
    return pa_flush_view_of_file(pa_process_current(), address, size);
}

BOOL CloseHandle(HANDLE handle) { return pa_close_handle(handle); }
