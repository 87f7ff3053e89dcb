/* os/linux.c: the host side of the memory manager on Linux (and other POSIX hosts with
 * MAP_NORESERVE). The only file that calls mmap, mprotect, madvise, munmap and
 * sigaction; see os.h for the contract.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "os.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

static int unix_prot(int prot)
{
    int u = PROT_NONE;
    if (prot & PA_OS_READ) u |= PROT_READ;
    if (prot & PA_OS_WRITE) u |= PROT_WRITE;
    if (prot & PA_OS_EXEC) u |= PROT_EXEC;
    return u;
}

int _pa_os_reserve(size_t size, size_t align, void **out)
{
    size_t span = size + align;
    if (span < size) return ENOMEM;
    char *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return errno;
    uintptr_t base = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = base - (uintptr_t)raw, tail = span - head - size;
    if (head) munmap(raw, head);
    if (tail) munmap((char *)base + size, tail);
    *out = (void *)base;
    return 0;
}

int _pa_os_unmap(void *addr, size_t size)
{
    return munmap(addr, size) ? errno : 0;
}

int _pa_os_protect(void *addr, size_t size, int prot)
{
    return mprotect(addr, size, unix_prot(prot)) ? errno : 0;
}

int _pa_os_decommit(void *addr, size_t size)
{
    void *r = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                   -1, 0);
    return r == MAP_FAILED ? errno : 0;
}

int _pa_os_reset(void *addr, size_t size)
{
#ifdef MADV_FREE
    if (madvise(addr, size, MADV_FREE) == 0) return 0;
#endif
    return madvise(addr, size, MADV_DONTNEED) ? errno : 0;
}

int _pa_os_zero(void *addr, size_t size)
{
    return madvise(addr, size, MADV_DONTNEED) ? errno : 0;
}

int _pa_os_move(void *dst, void *src, size_t size, int prot)
{
    errno = 0;
#ifdef MREMAP_DONTUNMAP
    if (mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst) == dst) return 0;
#endif
    int err = errno ? errno : ENOSYS;
    /* A failed MREMAP_FIXED may already have unmapped dst (the kernel clears the target
     * before it checks src: one src mapping only, for instance): put a zero range back. */
    void *r = mmap(dst, size, unix_prot(prot), MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED) abort(); /* a hole in the reservation: nothing safe is left to do */
    return err;
}

int _pa_os_page_flags(void *addr, size_t n, unsigned char *flags)
{
    static int fd = -1;
    if (fd < 0) {
        int f = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (f < 0) return errno;
        int expected = -1;
        if (!__atomic_compare_exchange_n(&fd, &expected, f, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) close(f);
    }
    uint64_t buf[512];
    size_t page = (uintptr_t)addr / 4096;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 512 ? n - done : 512;
        ssize_t r = pread(fd, buf, k * sizeof *buf, (off_t)((page + done) * sizeof *buf));
        if (r != (ssize_t)(k * sizeof *buf)) return r < 0 ? errno : EIO;
        for (size_t i = 0; i < k; i++)
            flags[done + i] = (unsigned char)(((buf[i] >> 63) & 1 ? PA_OS_PAGE_PRESENT : 0) |
                                              ((buf[i] >> 62) & 1 ? PA_OS_PAGE_SWAPPED : 0));
        done += k;
    }
    return 0;
}

void *_pa_os_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void _pa_os_free(void *addr, size_t size)
{
    if (addr) munmap(addr, size);
}

int _pa_os_map_fd(void *addr, size_t size, int prot, int fd, uint64_t offset, int shared)
{
    void *r = mmap(addr, size, unix_prot(prot), (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED,
                   fd, (off_t)offset);
    return r == MAP_FAILED ? errno : 0;
}

int _pa_os_memfd(uint64_t size, int *fd)
{
    int f = memfd_create("pyalloc-section", MFD_CLOEXEC);
    if (f < 0) return errno;
    if (ftruncate(f, (off_t)size)) {
        int e = errno;
        close(f);
        return e;
    }
    *fd = f;
    return 0;
}

int _pa_os_shm_open(const char *name, int create, int excl, int *fd, int *created)
{
    int f = -1;
    *created = 0;
    if (create) {
        f = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (f >= 0) *created = 1;
        else if (errno != EEXIST || excl) return errno;
    }
    if (f < 0) f = shm_open(name, O_RDWR | O_CLOEXEC, 0600);
    if (f < 0) return errno;
    *fd = f;
    return 0;
}

int _pa_os_shm_unlink(const char *name)
{
    return shm_unlink(name) ? errno : 0;
}

int _pa_os_fd_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st)) return errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int _pa_os_fd_grow(int fd, uint64_t size)
{
    uint64_t now;
    int e = _pa_os_fd_size(fd, &now);
    if (e || now >= size) return e;
    return ftruncate(fd, (off_t)size) ? errno : 0;
}

int _pa_os_fd_access(int fd, int *can_read, int *can_write)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return errno;
    int mode = fl & O_ACCMODE;
    *can_read = mode == O_RDONLY || mode == O_RDWR;
    *can_write = mode == O_WRONLY || mode == O_RDWR;
#ifdef O_PATH
    if (fl & O_PATH) *can_read = *can_write = 0; /* a descriptor without any access */
#endif
    return 0;
}

int _pa_os_dup(int fd, int *out)
{
    int f = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (f < 0) return errno;
    *out = f;
    return 0;
}

void _pa_os_close(int fd)
{
    if (fd >= 0) close(fd);
}

int _pa_os_sync(void *addr, size_t size)
{
    return msync(addr, size, MS_SYNC) ? errno : 0;
}

int _pa_os_map_shared(int fd, uint64_t offset, size_t size, void **out)
{
    void *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    if (r == MAP_FAILED) return errno;
    *out = r;
    return 0;
}

unsigned _pa_os_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

size_t _pa_os_address_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) || r.rlim_cur == RLIM_INFINITY || r.rlim_cur > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)r.rlim_cur;
}

void _pa_os_say(const char *message)
{
    size_t n = strlen(message);
    while (n) {
        ssize_t w = write(2, message, n);
        if (w <= 0) return;
        message += w;
        n -= (size_t)w;
    }
}

/* ---- fault handling ---- */

static pa_os_fault_fn fault_fn;
static struct sigaction previous_segv, previous_bus;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static int fault_install_error;

/* 1 write, 0 read, 2 execute, -1 unknown: from the x86 page-fault error code where we have it
 * (bit 1: write, bit 4: instruction fetch). */
static int fault_is_write(void *context)
{
#if defined(__x86_64__) && defined(REG_ERR)
    const ucontext_t *uc = context;
    greg_t err = uc->uc_mcontext.gregs[REG_ERR];
    return (err & 0x10) ? 2 : (err & 2) ? 1 : 0;
#else
    (void)context;
    return -1;
#endif
}

/* Was the signal sent (kill, raise, sigqueue: si_code <= 0) rather than raised by the kernel
 * for a fault? A sent one has no faulting access, and si_addr is not an address. */
static int sent(const siginfo_t *info) { return info->si_code <= 0; }

static void chain(int sig, siginfo_t *info, void *context)
{
    const struct sigaction *prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, info, context);
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
    } else if (prev->sa_handler == SIG_IGN && sent(info)) {
        return; /* ignored, as it would have been without us */
    } else {
        /* Default action (a fault ignores SIG_IGN, as the kernel does): restore it. A fault
         * then happens again when the access is retried and kills us with the right signal
         * and core dump; a sent signal is sent again (returning would lose it: `kill -SEGV`
         * and Python's faulthandler._sigsegv() left the process running). */
        signal(sig, SIG_DFL);
        if (sent(info)) raise(sig);
    }
}

static void on_fault(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    int handled = !sent(info) && fault_fn &&
                  fault_fn((uintptr_t)info->si_addr, fault_is_write(context), sig == SIGBUS);
    errno = saved;
    if (!handled) chain(sig, info, context);
}

static void install_once(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous_segv) || sigaction(SIGBUS, &sa, &previous_bus))
        fault_install_error = errno;
}

int _pa_os_install_fault_handler(pa_os_fault_fn handler)
{
    fault_fn = handler;
    pthread_once(&fault_once, install_once);
    return fault_install_error;
}
