/* pyalloc/crt.h: the CRT's Windows names (malloc.h, crtdbg.h, new.h) on pyalloc.
 *
 * Every function here acts on pa_process_current() (csrc/crt_win32.c). The names glibc also
 * has are spelled pa_malloc, pa_calloc, pa_realloc and pa_free, so that including this header
 * never changes the host's malloc; define PYALLOC_REPLACE_CRT before including it to have
 * malloc, calloc, realloc and free mean the pyalloc ones in the including file, and also
 * _CRTDBG_MAP_ALLOC to have them record the call site (__FILE__, __LINE__) as MSVC's crtdbg.h
 * does. The Windows-only names (_msize, _aligned_malloc, _malloc_dbg, _CrtCheckMemory ...) are
 * real functions: glibc has none of them.
 */
#ifndef PYALLOC_CRT_H
#define PYALLOC_CRT_H

#include <stddef.h>
#include <stdint.h>

#include "../pyalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int errno_t;
typedef int (*_CRT_ALLOC_HOOK)(int allocType, void *userData, size_t size, int blockType,
                               long requestNumber, const unsigned char *filename,
                               int lineNumber);
typedef int (*_CRT_REPORT_HOOK)(int reportType, char *message, int *returnValue);
/* UCRT's handler type; pyalloc passes NULL strings and 0, as the release UCRT does. */
typedef void (*_invalid_parameter_handler)(const wchar_t *expression, const wchar_t *function,
                                           const wchar_t *file, unsigned int line,
                                           uintptr_t reserved);

/* ---- malloc.h / stdlib.h ---- */
void *pa_malloc(size_t size);
void *pa_calloc(size_t count, size_t size);
void *pa_realloc(void *block, size_t size);
void pa_free(void *block);
size_t _msize(void *block);
void *_expand(void *block, size_t size);
void *_recalloc(void *block, size_t count, size_t size);
void *_aligned_malloc(size_t size, size_t alignment);
void *_aligned_offset_malloc(size_t size, size_t alignment, size_t offset);
void *_aligned_realloc(void *block, size_t size, size_t alignment);
void *_aligned_offset_realloc(void *block, size_t size, size_t alignment, size_t offset);
void *_aligned_recalloc(void *block, size_t count, size_t size, size_t alignment);
void *_aligned_offset_recalloc(void *block, size_t count, size_t size, size_t alignment,
                               size_t offset);
void _aligned_free(void *block);
size_t _aligned_msize(void *block, size_t alignment, size_t offset);
intptr_t _get_heap_handle(void);
errno_t _get_errno(int *value);
errno_t _set_errno(int value);
_invalid_parameter_handler _set_invalid_parameter_handler(_invalid_parameter_handler handler);
_invalid_parameter_handler _get_invalid_parameter_handler(void);

/* ---- new.h ---- */
int _set_new_mode(int mode);
int _query_new_mode(void);
_PNH _set_new_handler(_PNH handler);
_PNH _query_new_handler(void);
int _callnewh(size_t size);

/* ---- crtdbg.h ---- */
void *_malloc_dbg(size_t size, int blockType, const char *filename, int lineNumber);
void *_calloc_dbg(size_t count, size_t size, int blockType, const char *filename,
                  int lineNumber);
void *_realloc_dbg(void *block, size_t size, int blockType, const char *filename,
                   int lineNumber);
void *_recalloc_dbg(void *block, size_t count, size_t size, int blockType,
                    const char *filename, int lineNumber);
void *_expand_dbg(void *block, size_t size, int blockType, const char *filename,
                  int lineNumber);
void _free_dbg(void *block, int blockType);
size_t _msize_dbg(void *block, int blockType);
void *_aligned_malloc_dbg(size_t size, size_t alignment, const char *filename, int lineNumber);
void *_aligned_offset_malloc_dbg(size_t size, size_t alignment, size_t offset,
                                 const char *filename, int lineNumber);
void *_aligned_realloc_dbg(void *block, size_t size, size_t alignment, const char *filename,
                           int lineNumber);
void *_aligned_offset_realloc_dbg(void *block, size_t size, size_t alignment, size_t offset,
                                  const char *filename, int lineNumber);
void *_aligned_recalloc_dbg(void *block, size_t count, size_t size, size_t alignment,
                            const char *filename, int lineNumber);
void *_aligned_offset_recalloc_dbg(void *block, size_t count, size_t size, size_t alignment,
                                   size_t offset, const char *filename, int lineNumber);
void _aligned_free_dbg(void *block);
size_t _aligned_msize_dbg(void *block, size_t alignment, size_t offset);
int _CrtSetDbgFlag(int newFlag);
int _CrtCheckMemory(void);
int _CrtDumpMemoryLeaks(void);
long _CrtSetBreakAlloc(long request);
int _CrtIsValidHeapPointer(const void *userData);
int _CrtReportBlockType(const void *userData);
void _CrtSetDbgBlockType(void *userData, int blockType);
int _CrtIsMemoryBlock(const void *userData, unsigned int size, long *requestNumber,
                      char **filename, int *lineNumber);
void _CrtMemCheckpoint(_CrtMemState *state);
int _CrtMemDifference(_CrtMemState *stateDiff, const _CrtMemState *oldState,
                      const _CrtMemState *newState);
void _CrtMemDumpAllObjectsSince(const _CrtMemState *state);
void _CrtMemDumpStatistics(const _CrtMemState *state);
_CRT_ALLOC_HOOK _CrtSetAllocHook(_CRT_ALLOC_HOOK hook);
_CRT_ALLOC_HOOK _CrtGetAllocHook(void);
_CRT_REPORT_HOOK _CrtSetReportHook(_CRT_REPORT_HOOK hook);

#ifdef PYALLOC_REPLACE_CRT
#if defined(_CRTDBG_MAP_ALLOC)
#define malloc(s) _malloc_dbg(s, _NORMAL_BLOCK, __FILE__, __LINE__)
#define calloc(c, s) _calloc_dbg(c, s, _NORMAL_BLOCK, __FILE__, __LINE__)
#define realloc(p, s) _realloc_dbg(p, s, _NORMAL_BLOCK, __FILE__, __LINE__)
#define free(p) _free_dbg(p, _NORMAL_BLOCK)
#else
#define malloc pa_malloc
#define calloc pa_calloc
#define realloc pa_realloc
#define free pa_free
#endif
#endif

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_CRT_H */
