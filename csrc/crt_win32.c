/* crt_win32.c: layer 4's Windows names (pyalloc/crt.h), each the pa_crt_* function on
 * pa_process_current(). Handlers of Windows' types are kept here and called through
 * trampolines: these names have one process, so one slot each suffices.
 */
#include "crt_internal.h"
#include "pyalloc/crt.h"

#define CUR pa_process_current()

void *pa_malloc(size_t size) { return pa_crt_malloc(CUR, size); }
void *pa_calloc(size_t count, size_t size) { return pa_crt_calloc(CUR, count, size); }
void *pa_realloc(void *block, size_t size) { return pa_crt_realloc(CUR, block, size); }
void pa_free(void *block) { pa_crt_free(CUR, block); }
size_t _msize(void *block) { return pa_crt_msize(CUR, block); }
void *_expand(void *block, size_t size) { return pa_crt_expand(CUR, block, size); }
void *_recalloc(void *block, size_t count, size_t size)
{
    return pa_crt_recalloc(CUR, block, count, size);
}
void *_aligned_malloc(size_t size, size_t alignment)
{
    return pa_crt_aligned_malloc(CUR, size, alignment);
}
void *_aligned_offset_malloc(size_t size, size_t alignment, size_t offset)
{
    return pa_crt_aligned_offset_malloc(CUR, size, alignment, offset);
}
void *_aligned_realloc(void *block, size_t size, size_t alignment)
{
    return pa_crt_aligned_realloc(CUR, block, size, alignment);
}
void *_aligned_offset_realloc(void *block, size_t size, size_t alignment, size_t offset)
{
    return pa_crt_aligned_offset_realloc(CUR, block, size, alignment, offset);
}
void *_aligned_recalloc(void *block, size_t count, size_t size, size_t alignment)
{
    return pa_crt_aligned_recalloc(CUR, block, count, size, alignment);
}
void *_aligned_offset_recalloc(void *block, size_t count, size_t size, size_t alignment,
                               size_t offset)
{
    return pa_crt_aligned_offset_recalloc(CUR, block, count, size, alignment, offset);
}
void _aligned_free(void *block) { pa_crt_aligned_free(CUR, block); }
size_t _aligned_msize(void *block, size_t alignment, size_t offset)
{
    return pa_crt_aligned_msize(CUR, block, alignment, offset);
}
intptr_t _get_heap_handle(void) { return (intptr_t)pa_crt_get_heap_handle(CUR); }

errno_t _get_errno(int *value)
{
    if (!value) {
        pa_crt_t *c = _pa_crt_get(CUR);
        if (c) _pa_crt_invalid_parameter(CUR, c, "_get_errno", EINVAL);
        return EINVAL;
    }
    *value = errno;
    return 0;
}

errno_t _set_errno(int value)
{
    errno = value;
    return 0;
}

/* ---- handlers of Windows' types ---- */

static _Atomic(_invalid_parameter_handler) win_iph;
static _Atomic(_PNH) win_pnh;
static _Atomic(_CRT_ALLOC_HOOK) win_alloc_hook;
static _Atomic(_CRT_REPORT_HOOK) win_report_hook;

static void iph_trampoline(pa_process_t *p, const char *function, void *ctx)
{
    (void)p, (void)function, (void)ctx;
    _invalid_parameter_handler h = atomic_load(&win_iph);
    if (h) h(NULL, NULL, NULL, 0, 0);
}

_invalid_parameter_handler _set_invalid_parameter_handler(_invalid_parameter_handler handler)
{
    _invalid_parameter_handler old = atomic_exchange(&win_iph, handler);
    pa_crt_set_invalid_parameter_handler(CUR, handler ? iph_trampoline : NULL, NULL);
    return old;
}

_invalid_parameter_handler _get_invalid_parameter_handler(void) { return atomic_load(&win_iph); }

static int pnh_trampoline(pa_process_t *p, size_t size, void *ctx)
{
    (void)p, (void)ctx;
    _PNH h = atomic_load(&win_pnh);
    return h ? h(size) : 0;
}

int _set_new_mode(int mode) { return pa_crt_set_new_mode(CUR, mode); }
int _query_new_mode(void) { return pa_crt_query_new_mode(CUR); }

_PNH _set_new_handler(_PNH handler)
{
    _PNH old = _query_new_handler();
    atomic_store(&win_pnh, handler);
    pa_crt_set_new_handler(CUR, handler ? pnh_trampoline : NULL, NULL);
    return old;
}

/* The handler installed by _set_new_handler; NULL if none, or if the process's handler was
 * installed through pa_crt_set_new_handler (it has no _PNH). */
_PNH _query_new_handler(void)
{
    return pa_crt_query_new_handler(CUR, NULL) == pnh_trampoline ? atomic_load(&win_pnh) : NULL;
}

int _callnewh(size_t size) { return pa_crt_callnewh(CUR, size); }

/* ---- crtdbg.h ---- */

void *_malloc_dbg(size_t size, int blockType, const char *filename, int lineNumber)
{
    return pa_crt_malloc_dbg(CUR, size, blockType, filename, lineNumber);
}
void *_calloc_dbg(size_t count, size_t size, int blockType, const char *filename, int lineNumber)
{
    return pa_crt_calloc_dbg(CUR, count, size, blockType, filename, lineNumber);
}
void *_realloc_dbg(void *block, size_t size, int blockType, const char *filename, int lineNumber)
{
    return pa_crt_realloc_dbg(CUR, block, size, blockType, filename, lineNumber);
}
void *_recalloc_dbg(void *block, size_t count, size_t size, int blockType, const char *filename,
                    int lineNumber)
{
    return pa_crt_recalloc_dbg(CUR, block, count, size, blockType, filename, lineNumber);
}
void *_expand_dbg(void *block, size_t size, int blockType, const char *filename, int lineNumber)
{
    return pa_crt_expand_dbg(CUR, block, size, blockType, filename, lineNumber);
}
void _free_dbg(void *block, int blockType) { pa_crt_free_dbg(CUR, block, blockType); }
size_t _msize_dbg(void *block, int blockType) { return pa_crt_msize_dbg(CUR, block, blockType); }
void *_aligned_malloc_dbg(size_t size, size_t alignment, const char *filename, int lineNumber)
{
    return pa_crt_aligned_malloc_dbg(CUR, size, alignment, filename, lineNumber);
}
void *_aligned_offset_malloc_dbg(size_t size, size_t alignment, size_t offset,
                                 const char *filename, int lineNumber)
{
    return pa_crt_aligned_offset_malloc_dbg(CUR, size, alignment, offset, filename, lineNumber);
}
void *_aligned_realloc_dbg(void *block, size_t size, size_t alignment, const char *filename,
                           int lineNumber)
{
    return pa_crt_aligned_realloc_dbg(CUR, block, size, alignment, filename, lineNumber);
}
void *_aligned_offset_realloc_dbg(void *block, size_t size, size_t alignment, size_t offset,
                                  const char *filename, int lineNumber)
{
    return pa_crt_aligned_offset_realloc_dbg(CUR, block, size, alignment, offset, filename,
                                             lineNumber);
}
void *_aligned_recalloc_dbg(void *block, size_t count, size_t size, size_t alignment,
                            const char *filename, int lineNumber)
{
    return pa_crt_aligned_recalloc_dbg(CUR, block, count, size, alignment, filename, lineNumber);
}
void *_aligned_offset_recalloc_dbg(void *block, size_t count, size_t size, size_t alignment,
                                   size_t offset, const char *filename, int lineNumber)
{
    return pa_crt_aligned_offset_recalloc_dbg(CUR, block, count, size, alignment, offset,
                                              filename, lineNumber);
}
void _aligned_free_dbg(void *block) { pa_crt_aligned_free_dbg(CUR, block); }
size_t _aligned_msize_dbg(void *block, size_t alignment, size_t offset)
{
    return pa_crt_aligned_msize_dbg(CUR, block, alignment, offset);
}
int _CrtSetDbgFlag(int newFlag) { return pa_crt_set_dbg_flag(CUR, newFlag); }
int _CrtCheckMemory(void) { return pa_crt_check_memory(CUR); }
int _CrtDumpMemoryLeaks(void) { return pa_crt_dump_memory_leaks(CUR, NULL, NULL); }
long _CrtSetBreakAlloc(long request) { return pa_crt_set_break_alloc(CUR, request); }
int _CrtIsValidHeapPointer(const void *userData)
{
    return pa_crt_is_valid_heap_pointer(CUR, userData);
}
int _CrtReportBlockType(const void *userData) { return pa_crt_report_block_type(CUR, userData); }
void _CrtSetDbgBlockType(void *userData, int blockType)
{
    pa_crt_set_dbg_block_type(CUR, userData, blockType);
}
int _CrtIsMemoryBlock(const void *userData, unsigned int size, long *requestNumber,
                      char **filename, int *lineNumber)
{
    const char *file = NULL;
    int ok = pa_crt_is_memory_block(CUR, userData, size, requestNumber, &file, lineNumber);
    if (filename) *filename = (char *)file;
    return ok;
}
void _CrtMemCheckpoint(_CrtMemState *state) { pa_crt_mem_checkpoint(CUR, state); }
int _CrtMemDifference(_CrtMemState *stateDiff, const _CrtMemState *oldState,
                      const _CrtMemState *newState)
{
    return pa_crt_mem_difference(CUR, stateDiff, oldState, newState);
}
void _CrtMemDumpAllObjectsSince(const _CrtMemState *state)
{
    pa_crt_mem_dump_all_objects_since(CUR, state, NULL, NULL);
}
void _CrtMemDumpStatistics(const _CrtMemState *state)
{
    pa_crt_mem_dump_statistics(CUR, state, NULL, NULL);
}

static int alloc_hook_trampoline(pa_process_t *p, int op, void *block, size_t size, int use,
                                 long request, const char *file, int line, void *ctx)
{
    (void)p, (void)ctx;
    _CRT_ALLOC_HOOK h = atomic_load(&win_alloc_hook);
    return h ? h(op, block, size, use, request, (const unsigned char *)file, line) : 1;
}

_CRT_ALLOC_HOOK _CrtSetAllocHook(_CRT_ALLOC_HOOK hook)
{
    _CRT_ALLOC_HOOK old = atomic_exchange(&win_alloc_hook, hook);
    pa_crt_set_alloc_hook(CUR, hook ? alloc_hook_trampoline : NULL, NULL);
    return old;
}

_CRT_ALLOC_HOOK _CrtGetAllocHook(void) { return atomic_load(&win_alloc_hook); }

static int report_hook_trampoline(pa_process_t *p, const pa_crt_report_t *r, void *ctx)
{
    (void)p, (void)ctx;
    _CRT_REPORT_HOOK h = atomic_load(&win_report_hook);
    int ret = 0;
    return h ? h(r->type, (char *)r->message, &ret) : 0;
}

_CRT_REPORT_HOOK _CrtSetReportHook(_CRT_REPORT_HOOK hook)
{
    _CRT_REPORT_HOOK old = atomic_exchange(&win_report_hook, hook);
    pa_crt_set_report_hook(CUR, hook ? report_hook_trampoline : NULL, NULL);
    return old;
}
