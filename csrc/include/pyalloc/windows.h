/* pyalloc/windows.h: Windows' memory API with Windows' prototypes, on pyalloc.
 *
 * Include this instead of <windows.h> and Windows C code that uses these functions compiles
 * and runs unchanged on Linux, acting on pa_process_current(). Link with libpyalloc.
 */
#ifndef PYALLOC_WINDOWS_H
#define PYALLOC_WINDOWS_H

#include "../pyalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WINAPI

LPVOID WINAPI VirtualAlloc(LPVOID lpAddress, SIZE_T dwSize, DWORD flAllocationType,
                           DWORD flProtect);
BOOL WINAPI VirtualFree(LPVOID lpAddress, SIZE_T dwSize, DWORD dwFreeType);
BOOL WINAPI VirtualProtect(LPVOID lpAddress, SIZE_T dwSize, DWORD flNewProtect,
                           PDWORD lpflOldProtect);
SIZE_T WINAPI VirtualQuery(LPCVOID lpAddress, PMEMORY_BASIC_INFORMATION lpBuffer,
                           SIZE_T dwLength);
void WINAPI GetSystemInfo(LPSYSTEM_INFO lpSystemInfo);
UINT WINAPI GetWriteWatch(DWORD dwFlags, PVOID lpBaseAddress, SIZE_T dwRegionSize,
                          PVOID *lpAddresses, ULONG_PTR *lpdwCount, PULONG lpdwGranularity);
UINT WINAPI ResetWriteWatch(LPVOID lpBaseAddress, SIZE_T dwRegionSize);
typedef const char *LPCSTR;
typedef void *LPSECURITY_ATTRIBUTES;
/* A file HANDLE for CreateFileMapping comes from pa_nt_file_handle(fd, &handle). */
HANDLE WINAPI CreateFileMappingA(HANDLE hFile, LPSECURITY_ATTRIBUTES lpAttributes, DWORD flProtect,
                                 DWORD dwMaximumSizeHigh, DWORD dwMaximumSizeLow, LPCSTR lpName);
HANDLE WINAPI OpenFileMappingA(DWORD dwDesiredAccess, BOOL bInheritHandle, LPCSTR lpName);
LPVOID WINAPI MapViewOfFile(HANDLE hFileMappingObject, DWORD dwDesiredAccess,
                            DWORD dwFileOffsetHigh, DWORD dwFileOffsetLow,
                            SIZE_T dwNumberOfBytesToMap);
LPVOID WINAPI MapViewOfFileEx(HANDLE hFileMappingObject, DWORD dwDesiredAccess,
                              DWORD dwFileOffsetHigh, DWORD dwFileOffsetLow,
                              SIZE_T dwNumberOfBytesToMap, LPVOID lpBaseAddress);
BOOL WINAPI UnmapViewOfFile(LPCVOID lpBaseAddress);
BOOL WINAPI FlushViewOfFile(LPCVOID lpBaseAddress, SIZE_T dwNumberOfBytesToFlush);
BOOL WINAPI CloseHandle(HANDLE hObject);
#define CreateFileMapping CreateFileMappingA
#define OpenFileMapping OpenFileMappingA
DWORD WINAPI GetLastError(void);
void WINAPI SetLastError(DWORD dwErrCode);

/* ==== layer 3: heap (csrc/heap_win32.c) ==== */
HANDLE WINAPI HeapCreate(DWORD flOptions, SIZE_T dwInitialSize, SIZE_T dwMaximumSize);
BOOL WINAPI HeapDestroy(HANDLE hHeap);
HANDLE WINAPI GetProcessHeap(void);
DWORD WINAPI GetProcessHeaps(DWORD NumberOfHeaps, HANDLE *ProcessHeaps);
LPVOID WINAPI HeapAlloc(HANDLE hHeap, DWORD dwFlags, SIZE_T dwBytes);
LPVOID WINAPI HeapReAlloc(HANDLE hHeap, DWORD dwFlags, LPVOID lpMem, SIZE_T dwBytes);
BOOL WINAPI HeapFree(HANDLE hHeap, DWORD dwFlags, LPVOID lpMem);
SIZE_T WINAPI HeapSize(HANDLE hHeap, DWORD dwFlags, LPCVOID lpMem);
BOOL WINAPI HeapValidate(HANDLE hHeap, DWORD dwFlags, LPCVOID lpMem);
SIZE_T WINAPI HeapCompact(HANDLE hHeap, DWORD dwFlags);
BOOL WINAPI HeapLock(HANDLE hHeap);
BOOL WINAPI HeapUnlock(HANDLE hHeap);
BOOL WINAPI HeapWalk(HANDLE hHeap, LPPROCESS_HEAP_ENTRY lpEntry);
BOOL WINAPI HeapSetInformation(HANDLE HeapHandle, HEAP_INFORMATION_CLASS HeapInformationClass,
                               PVOID HeapInformation, SIZE_T HeapInformationLength);
BOOL WINAPI HeapQueryInformation(HANDLE HeapHandle, HEAP_INFORMATION_CLASS HeapInformationClass,
                                 PVOID HeapInformation, SIZE_T HeapInformationLength,
                                 PSIZE_T ReturnLength);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_WINDOWS_H */
