/* heap_win32.c: layer 3, the heap functions with Windows' names and prototypes
 * (pyalloc/windows.h), acting on pa_process_current(). HeapCreate drops the tail- and
 * free-checking create flags as Windows does (heap.md fact 5); the debug heap is switched on
 * from the environment instead (PYALLOC_HEAP_*, heap_debug.c) or with pa_heap_create.
 */
#include "heap_internal.h"
#include "pyalloc/windows.h"

HANDLE HeapCreate(DWORD options, SIZE_T initial, SIZE_T maximum)
{
    return pa_heap_create(pa_process_current(),
                          options & ~(DWORD)(HEAP_TAIL_CHECKING_ENABLED | HEAP_FREE_CHECKING_ENABLED),
                          initial, maximum);
}

BOOL HeapDestroy(HANDLE heap) { return pa_heap_destroy(pa_process_current(), heap); }

HANDLE GetProcessHeap(void) { return pa_heap_get_process_heap(pa_process_current()); }

DWORD GetProcessHeaps(DWORD count, HANDLE *heaps)
{
    return pa_heap_get_process_heaps(pa_process_current(), count, heaps);
}

LPVOID HeapAlloc(HANDLE heap, DWORD flags, SIZE_T bytes)
{
    return pa_heap_alloc(pa_process_current(), heap, flags, bytes);
}

LPVOID HeapReAlloc(HANDLE heap, DWORD flags, LPVOID mem, SIZE_T bytes)
{
    return pa_heap_realloc(pa_process_current(), heap, flags, mem, bytes);
}

BOOL HeapFree(HANDLE heap, DWORD flags, LPVOID mem)
{
    return pa_heap_free(pa_process_current(), heap, flags, mem);
}

SIZE_T HeapSize(HANDLE heap, DWORD flags, LPCVOID mem)
{
    return pa_heap_size(pa_process_current(), heap, flags, mem);
}

BOOL HeapValidate(HANDLE heap, DWORD flags, LPCVOID mem)
{
    return pa_heap_validate(pa_process_current(), heap, flags, mem);
}

SIZE_T HeapCompact(HANDLE heap, DWORD flags)
{
    return pa_heap_compact(pa_process_current(), heap, flags);
}

BOOL HeapLock(HANDLE heap) { return pa_heap_lock(pa_process_current(), heap); }

BOOL HeapUnlock(HANDLE heap) { return pa_heap_unlock(pa_process_current(), heap); }

BOOL HeapWalk(HANDLE heap, LPPROCESS_HEAP_ENTRY entry)
{
    return pa_heap_walk(pa_process_current(), heap, entry);
}

BOOL HeapSetInformation(HANDLE heap, HEAP_INFORMATION_CLASS info_class, PVOID info, SIZE_T length)
{
    return pa_heap_set_information(pa_process_current(), heap, info_class, info, length);
}

BOOL HeapQueryInformation(HANDLE heap, HEAP_INFORMATION_CLASS info_class, PVOID info,
                          SIZE_T length, PSIZE_T return_length)
{
    return pa_heap_query_information(pa_process_current(), heap, info_class, info, length,
                                     return_length);
}
