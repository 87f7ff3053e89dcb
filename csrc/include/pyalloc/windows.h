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
DWORD WINAPI GetLastError(void);
void WINAPI SetLastError(DWORD dwErrCode);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_WINDOWS_H */
