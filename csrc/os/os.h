/* os/os.h: the narrow contract between the pyalloc core and the host OS.
 *
 * Only the files in csrc/os/ call mmap, mprotect, madvise, munmap or sigaction; the memory
 * manager (mm.c) sees the host through these functions alone. Every function returns 0 on
 * success and an errno value on failure unless it says otherwise.
 */
#ifndef PA_OS_H
#define PA_OS_H

#include <stddef.h>
#include <stdint.h>

/* Host protections, independent of <sys/mman.h>. */
#define PA_OS_NONE 0
#define PA_OS_READ 1
#define PA_OS_WRITE 2
#define PA_OS_EXEC 4

/* Reserves size bytes aligned to align (a power of two) as inaccessible, uncharged address
 * space. *out receives the base. */
int _pa_os_reserve(size_t size, size_t align, void **out);
/* Returns a reservation (or any part of _pa_os_reserve/_pa_os_alloc memory) to the host. */
int _pa_os_unmap(void *addr, size_t size);
/* Changes the host protection of whole pages. */
int _pa_os_protect(void *addr, size_t size, int prot);
/* Drops the contents of whole pages and makes them inaccessible; they read as zero once
 * made accessible again. The range stays reserved. */
int _pa_os_decommit(void *addr, size_t size);
/* Tells the host that the contents of whole pages are no longer needed (they may be kept or
 * replaced by zeros). */
int _pa_os_reset(void *addr, size_t size);
/* Replaces the contents of whole pages of private anonymous memory by zeros, keeping them
 * accessible (madvise MADV_DONTNEED: the host frees them; they fault in as zero pages). */
int _pa_os_zero(void *addr, size_t size);
/* Moves the contents of whole pages of private anonymous memory from src to dst (the same
 * size, not overlapping) by moving the host's page mappings, with no copy: dst then holds
 * what src held, with src's protection (prot, which dst must have had), and src reads as zero,
 * still accessible (mremap MREMAP_DONTUNMAP). On failure src is unchanged and dst is a fresh
 * zero range with protection prot: dst must read as zero before the call. */
int _pa_os_move(void *dst, void *src, size_t size, int prot);
/* Per page of [addr, addr + n pages): PA_OS_PAGE_PRESENT if the host has it in memory,
 * PA_OS_PAGE_SWAPPED if it is swapped out, 0 if it was never populated or was dropped (reads
 * as zeros). From /proc/self/pagemap; nonzero (errno) when that cannot be read. */
#define PA_OS_PAGE_PRESENT 1u
#define PA_OS_PAGE_SWAPPED 2u
int _pa_os_page_flags(void *addr, size_t n, unsigned char *flags);
/* Zeroed, readable and writable memory for the core's own bookkeeping (never malloc: the
 * core must run under a program whose malloc is ours). */
void *_pa_os_alloc(size_t size);
void _pa_os_free(void *addr, size_t size);

/* ---- files and shared memory, for sections ---- */
/* Maps size bytes of fd at offset over [addr, addr + size) (which must be inside a reservation),
 * shared (writes reach the object) or private (copy-on-write), with host protection prot. */
int _pa_os_map_fd(void *addr, size_t size, int prot, int fd, uint64_t offset, int shared);
/* An anonymous shareable memory object of size bytes (memfd). *fd receives it. */
int _pa_os_memfd(uint64_t size, int *fd);
/* Opens the named shared memory object (POSIX shm). create: create it if missing; excl: fail
 * with EEXIST if it exists. *created tells which happened. */
int _pa_os_shm_open(const char *name, int create, int excl, int *fd, int *created);
int _pa_os_shm_unlink(const char *name);
/* Size of the object behind fd; grows it to size if smaller (never shrinks). */
int _pa_os_fd_size(int fd, uint64_t *size);
int _pa_os_fd_grow(int fd, uint64_t size);
/* Whether fd was opened for reading and for writing (*can_read, *can_write). */
int _pa_os_fd_access(int fd, int *can_read, int *can_write);
int _pa_os_dup(int fd, int *out);
void _pa_os_close(int fd);
/* Writes dirty pages of [addr, addr + size) back to their file and waits (msync MS_SYNC). */
int _pa_os_sync(void *addr, size_t size);
/* Maps [offset, offset + size) of fd into fresh host memory, read-write and shared (for section
 * headers). *out receives it; release with _pa_os_free. */
int _pa_os_map_shared(int fd, uint64_t offset, size_t size, void **out);

/* Number of online processors (at least 1). */
unsigned _pa_os_ncpu(void);
/* The host's limit on this process's address space (RLIMIT_AS), or SIZE_MAX for none. */
size_t _pa_os_address_limit(void);
/* Writes a message to the host's stderr (for a failure that ends the process). */
void _pa_os_say(const char *message);

/* Installs the process-wide fault handler once. On a SIGSEGV/SIGBUS, handler(addr, write, bus)
 * is called with write = 1 (write), 0 (read), 2 (execute: an instruction fetch) or -1
 * (unknown), and bus = 1 for SIGBUS (a file-backed page past the end of its file); it returns
 * non-zero when it fixed the cause, and the access is retried; otherwise the previous handler
 * runs. */
typedef int (*pa_os_fault_fn)(uintptr_t addr, int write, int bus);
int _pa_os_install_fault_handler(pa_os_fault_fn handler);

#endif /* PA_OS_H */
