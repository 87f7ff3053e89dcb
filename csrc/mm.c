/* mm.c: layer 1, the kernel-mode memory manager.
 *
 * Owns the simulated address space of each process: one host reservation per process, carved
 * into allocations at 64 KiB granularity, with per-page commit state and protection, commit
 * charge, write watches, guard pages, pins, and the fault handler that gives guard pages and
 * write watches their meaning for direct loads and stores. Entry points are NT-style
 * (pa_nt_*) and return NTSTATUS; virtual.c turns them into Win32 results. The tables and their
 * invariants are described in internal.h. The host is reached only through os/os.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"

/* ------------------------------------------------------------------------------------------ */
/* Pools                                                                                        */

#define PA_POOL_CHUNK ((size_t)64 * 1024)

void *_pa_pool_get(pa_pool_t *pool)
{
    void *item = pool->free;
    if (item) {
        pool->free = *(void **)item;
    } else {
        /* Carve from the newest chunk in order, so a short-lived process touches only the
         * pages it uses (threading a new chunk's free list would fault in all 16). */
        if (pool->end - pool->next < (ptrdiff_t)pool->item_size) {
            char *chunk = _pa_os_alloc(PA_POOL_CHUNK);
            if (!chunk) return NULL;
            *(void **)chunk = pool->chunks;
            pool->chunks = chunk;
            /* The first item slot holds the chunk link. */
            pool->next = chunk + pool->item_size;
            pool->end = chunk + PA_POOL_CHUNK;
        }
        item = pool->next;
        pool->next += pool->item_size;
    }
    memset(item, 0, pool->item_size);
    return item;
}

void _pa_pool_put(pa_pool_t *pool, void *item)
{
    *(void **)item = pool->free;
    pool->free = item;
}

void _pa_pool_destroy(pa_pool_t *pool)
{
    while (pool->chunks) {
        void *next = *(void **)pool->chunks;
        _pa_os_free(pool->chunks, PA_POOL_CHUNK);
        pool->chunks = next;
    }
    pool->free = NULL;
    pool->next = pool->end = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Locking and the process registry (read by the fault handler)                                */

#define PA_MAX_PROCESSES 4096
static _Atomic(pa_process_t *) registry[PA_MAX_PROCESSES];
static pa_exception_handler_t exception_handler;

void _pa_lock(pa_process_t *p)
{
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->lock_owner, (uintptr_t)pthread_self(), memory_order_relaxed);
}

void _pa_unlock(pa_process_t *p)
{
    atomic_store_explicit(&p->lock_owner, 0, memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
}

/* fork: every registered process's lock, in registry order (no code takes two at once). */
static void fork_each(int phase)
{
    for (int i = 0; i < PA_MAX_PROCESSES; i++) {
        pa_process_t *p = atomic_load_explicit(&registry[i], memory_order_acquire);
        if (!p) continue;
        if (phase == 0) {
            _pa_lock(p);
        } else if (phase == 1) {
            _pa_unlock(p);
        } else {
            pthread_mutex_init(&p->lock, NULL);
            atomic_store_explicit(&p->lock_owner, 0, memory_order_relaxed);
        }
    }
}

void pa_mm_fork_prepare(void) { fork_each(0); }
void pa_mm_fork_parent(void) { fork_each(1); }
void pa_mm_fork_child(void) { fork_each(2); }

void pa_set_exception_handler(pa_exception_handler_t handler)
{
    exception_handler = handler;
}

/* ------------------------------------------------------------------------------------------ */
/* Protections                                                                                 */

/* Index (log2) of a single base protection, or -1. */
static int prot_index(DWORD base)
{
    if (!base || (base & (base - 1)) || base > PAGE_EXECUTE_WRITECOPY) return -1;
    return __builtin_ctz(base);
}

/* Validates a PAGE_* value: exactly one base protection plus the modifiers Windows accepts.
 * WRITECOPY bases are accepted only for mapped memory (allow_copy). On success *index is the
 * base's log2 and *guard says whether PAGE_GUARD was given. */
static NTSTATUS check_protect(DWORD protect, int allow_copy, int *index, int *guard)
{
    DWORD mods = protect & (PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE);
    DWORD base = protect & 0xFFu;
    int i = prot_index(base);
    if (i < 0 || (protect & ~(0xFFu | PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE)))
        return STATUS_INVALID_PAGE_PROTECTION;
    if (!allow_copy && (base == PAGE_WRITECOPY || base == PAGE_EXECUTE_WRITECOPY))
        return STATUS_INVALID_PAGE_PROTECTION;
    /* PAGE_GUARD, PAGE_NOCACHE and PAGE_WRITECOMBINE exclude each other and PAGE_NOACCESS
     * (memory-protection-constants; creating-guard-pages). */
    if (mods & (mods - 1)) return STATUS_INVALID_PAGE_PROTECTION;
    if (mods && base == PAGE_NOACCESS) return STATUS_INVALID_PAGE_PROTECTION;
    *index = i;
    *guard = (protect & PAGE_GUARD) != 0;
    return STATUS_SUCCESS;
}

static int state_readable(pa_pstate_t s)
{
    return (s & PS_COMMITTED) && (s & PS_PROT_MASK) != 0; /* anything but NOACCESS */
}

static int state_executable(pa_pstate_t s)
{
    return (s & PS_COMMITTED) && (s & PS_PROT_MASK) >= 4; /* the PAGE_EXECUTE* values */
}

static int state_writable(pa_pstate_t s)
{
    unsigned i = s & PS_PROT_MASK;
    /* READWRITE (2), WRITECOPY (3), EXECUTE_READWRITE (6), EXECUTE_WRITECOPY (7) */
    return (s & PS_COMMITTED) && (i == 2 || i == 3 || i == 6 || i == 7);
}

/* The host protection a page must have (Wine's get_unix_prot does the same job). */
static int host_prot(pa_pstate_t s)
{
    static const int table[8] = {
        PA_OS_NONE,                             /* NOACCESS */
        PA_OS_READ,                             /* READONLY */
        PA_OS_READ | PA_OS_WRITE,               /* READWRITE */
        PA_OS_READ,                             /* WRITECOPY: the first write faults */
        PA_OS_READ | PA_OS_EXEC,                /* EXECUTE: x86 cannot express execute-only */
        PA_OS_READ | PA_OS_EXEC,                /* EXECUTE_READ */
        PA_OS_READ | PA_OS_WRITE | PA_OS_EXEC,  /* EXECUTE_READWRITE */
        PA_OS_READ | PA_OS_EXEC,                /* EXECUTE_WRITECOPY */
    };
    if (!(s & PS_COMMITTED) || (s & PS_GUARD)) return PA_OS_NONE;
    int prot = table[s & PS_PROT_MASK];
    if (s & (PS_WATCH_CLEAN | PS_RESET_ARMED)) prot &= ~PA_OS_WRITE;
    return prot;
}

/* Makes the host protection of pages [addr, addr + n pages) match their state, one system
 * call per run of equal protection. Returns an errno value. */
static int apply_host_locked(pa_process_t *p, uintptr_t addr, size_t n)
{
    pa_pstate_t *s = _pa_pstate(p, addr);
    size_t i = 0;
    while (i < n) {
        int prot = host_prot(s[i]);
        size_t j = i + 1;
        while (j < n && host_prot(s[j]) == prot) j++;
        int err = _pa_os_protect((void *)(addr + (i << PA_PAGE_SHIFT)), (j - i) << PA_PAGE_SHIFT,
                                 prot);
        if (err) return err;
        i = j;
    }
    return 0;
}

/* Brings a SEC_RESERVE view's page states up to date with its section's commit bitmap:
 * another view (or host process) may have committed pages since. */
static void sync_view_locked(pa_process_t *p, pa_alloc_t *a)
{
    pa_section_t *sec = a->section;
    if (!sec || !(sec->attributes & SEC_RESERVE)) return;
    uint32_t gen = _pa_section_generation(sec);
    if (gen == a->gen) return;
    a->gen = gen;
    pa_pstate_t *s = _pa_pstate(p, a->base);
    size_t n = a->size >> PA_PAGE_SHIFT;
    uint64_t first = a->offset >> PA_PAGE_SHIFT;
    pa_pstate_t bits = (pa_pstate_t)(PS_COMMITTED | (unsigned)__builtin_ctz(a->alloc_prot & 0xFF));
    int copy = (a->alloc_prot & (PAGE_WRITECOPY | PAGE_EXECUTE_WRITECOPY)) != 0;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] & PS_COMMITTED) || !_pa_section_page_committed(sec, first + i)) continue;
        s[i] = (pa_pstate_t)(bits | (copy ? PS_PRIVATE_MAP : 0));
        apply_host_locked(p, a->base + (i << PA_PAGE_SHIFT), 1);
    }
}

/* A write to a copy-on-write page makes it private and writable for good (the host copies
 * it on the retried write); VirtualQuery then reports PAGE_READWRITE for it. */
static void copy_on_write_locked(pa_process_t *p, uintptr_t page)
{
    pa_pstate_t *s = _pa_pstate(p, page);
    unsigned i = *s & PS_PROT_MASK;
    if (i != 3 && i != 7) return;
    *s = (pa_pstate_t)((*s & ~PS_PROT_MASK) | (i == 3 ? 2u : 6u) | PS_COPIED);
    apply_host_locked(p, page, 1);
    _pa_trace(p, PA_OP_COPY_ON_WRITE, page, PA_PAGE_SIZE, 0, 0, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Slot bitmap                                                                                 */

static inline int slot_used(const pa_process_t *p, size_t i)
{
    return (p->used[i >> 6] >> (i & 63)) & 1;
}

/* First slot in [from, to) whose used bit equals `want`, or `to`. */
static size_t slot_scan_up(const pa_process_t *p, size_t from, size_t to, int want)
{
    while (from < to) {
        uint64_t w = p->used[from >> 6];
        if (!want) w = ~w;
        w &= ~(uint64_t)0 << (from & 63);
        if (w) {
            size_t i = (from & ~(size_t)63) + (size_t)__builtin_ctzll(w);
            return i < to ? i : to;
        }
        from = (from & ~(size_t)63) + 64;
    }
    return to;
}

/* Last slot in [from, to) whose used bit equals `want`, or (size_t)-1. */
static size_t slot_scan_down(const pa_process_t *p, size_t from, size_t to, int want)
{
    while (to > from) {
        size_t last = to - 1;
        uint64_t w = p->used[last >> 6];
        if (!want) w = ~w;
        unsigned bit = last & 63;
        if (bit != 63) w &= ((uint64_t)1 << (bit + 1)) - 1;
        if (w) {
            size_t i = (last & ~(size_t)63) + 63 - (size_t)__builtin_clzll(w);
            return i >= from ? i : (size_t)-1;
        }
        to = last & ~(size_t)63;
    }
    return (size_t)-1;
}

/* The first slot of n free ones, bottom-up from the first free slot, whose address is `phase`
 * slots past a multiple of `period` slots (period 1: any); (size_t)-1 when there is none. */
static size_t find_phased_slots_locked(const pa_process_t *p, size_t n, size_t period, size_t phase)
{
    size_t lo = 1, hi = p->nslots - 1, s0 = p->base >> PA_SLOT_SHIFT;
    size_t i = p->free_hint > lo ? p->free_hint : lo;
    for (;;) {
        i = slot_scan_up(p, i, hi, 0);
        if (period > 1) i += (phase + period - (s0 + i) % period) % period;
        if (i >= hi || n > hi - i) return (size_t)-1;
        size_t j = slot_scan_up(p, i, i + n, 1);
        if (j == i + n) return i;
        i = j + 1;
    }
}

/* Finds n consecutive free slots between the first and last usable slot, bottom-up or
 * top-down. Returns the first slot or (size_t)-1. */
static size_t find_free_slots_locked(pa_process_t *p, size_t n, int top_down)
{
    size_t lo = 1, hi = p->nslots - 1; /* slot 0 and the last slot are never usable */
    if (n > hi - lo) return (size_t)-1;
    if (!top_down) return find_phased_slots_locked(p, n, 1, 0);
    size_t end = hi;
    for (;;) {
        size_t z = slot_scan_down(p, lo, end, 0);
        if (z == (size_t)-1 || z + 1 < lo + n) return (size_t)-1;
        end = z + 1;
        size_t j = slot_scan_down(p, end - n, end, 1);
        if (j == (size_t)-1) return end - n;
        end = j;
    }
}

void *pa_mm_find_phased(pa_process_t *p, size_t size, size_t align, size_t phase)
{
    if (!p || !size || !align || (align | phase) & (PA_GRANULARITY - 1) || phase >= align ||
        size > p->limit - p->min)
        return NULL;
    size_t n = _pa_align_up(size, PA_GRANULARITY) >> PA_SLOT_SHIFT;
    _pa_lock(p);
    size_t first = find_phased_slots_locked(p, n, align >> PA_SLOT_SHIFT, phase >> PA_SLOT_SHIFT);
    _pa_unlock(p);
    return first == (size_t)-1 ? NULL : (void *)(p->base + (first << PA_SLOT_SHIFT));
}

static void mark_slots_locked(pa_process_t *p, pa_alloc_t *a)
{
    size_t first = (a->base - p->base) >> PA_SLOT_SHIFT;
    size_t n = _pa_align_up(a->size, PA_GRANULARITY) >> PA_SLOT_SHIFT;
    for (size_t i = first; i < first + n; i++) {
        p->slots[i] = a;
        p->used[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    if (first <= p->free_hint && p->free_hint < first + n) p->free_hint = first + n;
}

static void clear_slots_locked(pa_process_t *p, pa_alloc_t *a)
{
    size_t first = (a->base - p->base) >> PA_SLOT_SHIFT;
    size_t n = _pa_align_up(a->size, PA_GRANULARITY) >> PA_SLOT_SHIFT;
    for (size_t i = first; i < first + n; i++) {
        p->slots[i] = NULL;
        p->used[i >> 6] &= ~((uint64_t)1 << (i & 63));
    }
    if (first < p->free_hint) p->free_hint = first;
}

/* ------------------------------------------------------------------------------------------ */
/* Pins                                                                                        */

/* Returns 1 if a pin overlaps [start, end) and would be broken by the change: any change for
 * `all` (release, decommit), or, for a protection change to `new_state`, loss of the read or
 * (for writable pins) write access the export relies on. */
static int pins_block_locked(const pa_process_t *p, uintptr_t start, uintptr_t end, int all,
                             pa_pstate_t new_state)
{
    for (const pa_pin_t *pin = p->pins; pin; pin = pin->next) {
        if (pin->end <= start || pin->start >= end) continue;
        if (all) return 1;
        if ((new_state & PS_GUARD) || !state_readable(new_state)) return 1;
        if (pin->writable && !state_writable(new_state)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Fault handling                                                                              */

static pa_process_t *process_containing(uintptr_t addr)
{
    for (int i = 0; i < PA_MAX_PROCESSES; i++) {
        pa_process_t *p = atomic_load_explicit(&registry[i], memory_order_acquire);
        if (p && addr >= p->base && addr < p->base + p->span) return p;
    }
    return NULL;
}

/* The first write to a page that is write-watched and clean, or reset with data in it
 * (host-write-protected for either): the watch records it, and a reset page that the host
 * dropped in the meantime (it reads as zeros now, where it held data) is marked lost for
 * MEM_RESET_UNDO - after this write the host keeps the page, and its zeros would look like
 * the program's own data. The caller lifts the host's protection (apply_host_locked). */
static int page_is_zero(uintptr_t page);

static void first_write_locked(uintptr_t page, pa_pstate_t *s)
{
    if ((*s & PS_RESET_ARMED) && page_is_zero(page)) *s |= PS_RESET_LOST;
    *s &= (pa_pstate_t)~(PS_WATCH_CLEAN | PS_RESET_ARMED);
}

/* A checked copy (pa_mm_read, pa_mm_write) under way on this thread, and the first page of
 * it whose file no longer reaches it (0: none). Volatile: the fault handler reads and writes
 * them in the middle of the memcpy, which the compiler would otherwise move the stores past. */
static __thread volatile int copy_active __attribute__((tls_model("initial-exec")));
static __thread volatile uintptr_t copy_lost __attribute__((tls_model("initial-exec")));

/* A bus error at `page` of a file view: the file was truncated below it after the view was
 * mapped. Windows refuses that while a view exists (ERROR_USER_MAPPED_FILE); Linux allows it,
 * and the host then raises SIGBUS at each access, which would end the program. The page is
 * replaced by an anonymous zero page with the page's protection, so that the access goes on
 * (a checked copy reports STATUS_IN_PAGE_ERROR, as Windows does for a page its file cannot
 * supply). Process lock held. */
static int lost_file_page_locked(pa_process_t *p, uintptr_t page)
{
    const pa_alloc_t *a = _pa_alloc_at_locked(p, page);
    if (!a || a->type != MEM_MAPPED || !(*_pa_pstate(p, page) & PS_COMMITTED)) return 0;
    return _pa_os_decommit((void *)page, PA_PAGE_SIZE) == 0 && apply_host_locked(p, page, 1) == 0;
}

/* Called from the SIGSEGV/SIGBUS handler. Returns 1 when the access may be retried. */
static int mm_fault(uintptr_t addr, int write, int bus)
{
    pa_process_t *p = process_containing(addr);
    if (!p) return 0;
    uintptr_t page = _pa_align_down(addr, PA_PAGE_SIZE);
    /* A fault under our own lock is a bug in the core, not something to handle - but for a
     * checked copy's bus error (its lock is held: the state is consistent). */
    if (atomic_load_explicit(&p->lock_owner, memory_order_relaxed) == (uintptr_t)pthread_self()) {
        if (!bus || !copy_active || !lost_file_page_locked(p, page)) return 0;
        if (!copy_lost) copy_lost = page;
        return 1;
    }
    _pa_lock(p);
    if (bus) {
        int fixed = lost_file_page_locked(p, page);
        _pa_unlock(p);
        return fixed;
    }
    int handled = 0, guard = 0, watch = 0;
    int may_write = write == 1 || write == -1; /* an instruction fetch (2) never writes */
    pa_alloc_t *a = _pa_alloc_at_locked(p, addr);
    if (a) {
        pa_pstate_t *s = _pa_pstate(p, page);
        sync_view_locked(p, a);
        unsigned idx = *s & PS_PROT_MASK;
        if ((*s & PS_COMMITTED) && (*s & PS_GUARD)) {
            *s &= (pa_pstate_t)~PS_GUARD;
            p->guard_hits++;
            guard = handled = apply_host_locked(p, page, 1) == 0;
        } else if (may_write && (*s & PS_COMMITTED) && (idx == 3 || idx == 7)) {
            copy_on_write_locked(p, page);
            handled = 1;
        } else if (may_write && (*s & (PS_WATCH_CLEAN | PS_RESET_ARMED)) && state_writable(*s)) {
            watch = (*s & PS_WATCH_CLEAN) != 0;
            p->watch_faults += (size_t)watch;
            first_write_locked(page, s);
            handled = apply_host_locked(p, page, 1) == 0;
        } else if (write == 1   ? (state_writable(*s) && !(*s & (PS_WATCH_CLEAN | PS_RESET_ARMED)))
                   : write == 0 ? state_readable(*s)
                   : write == 2 && state_executable(*s)) {
            /* Another thread fixed the page between the fault and the lock. Executing a page
             * that is readable but not executable is an access violation (DEP), not this. */
            handled = 1;
        }
    }
    _pa_unlock(p);
    if (handled)
        _pa_trace(p, guard ? PA_OP_GUARD_HIT : PA_OP_WATCH_FAULT, addr, PA_PAGE_SIZE,
                  write == 1, 0, guard ? STATUS_GUARD_PAGE_VIOLATION : 0);
    if (guard && exception_handler)
        exception_handler(p, STATUS_GUARD_PAGE_VIOLATION, write == 1, addr);
    return handled;
}

/* ------------------------------------------------------------------------------------------ */
/* Processes                                                                                   */

uintptr_t pa_process_min_address(const pa_process_t *p) { return p->min; }
uintptr_t pa_process_max_address(const pa_process_t *p) { return p->limit - 1; }

pa_process_t *pa_process_create(const pa_process_options_t *options, NTSTATUS *status)
{
    size_t span = options && options->address_space ? options->address_space
                                                    : PA_DEFAULT_ADDRESS_SPACE;
    NTSTATUS st = STATUS_NO_MEMORY;
    pa_process_t *p = NULL;
    /* At least the null slot, one usable slot and the top slot; a granularity multiple. */
    if (span < 3 * PA_GRANULARITY || (span & (PA_GRANULARITY - 1)) || span > ((size_t)1 << 46)) {
        st = STATUS_INVALID_PARAMETER;
        goto fail;
    }
    p = _pa_os_alloc(sizeof *p);
    if (!p) goto fail;
    p->registry_slot = -1;
    p->span = span;
    p->npages = span >> PA_PAGE_SHIFT;
    p->nslots = span >> PA_SLOT_SHIFT;
    p->pages = _pa_os_alloc(p->npages * sizeof *p->pages);
    p->slots = _pa_os_alloc(p->nslots * sizeof *p->slots);
    p->used = _pa_os_alloc(((p->nslots + 63) / 64) * sizeof *p->used);
    if (!p->pages || !p->slots || !p->used) goto fail;
    void *base;
    if (_pa_os_reserve(span, PA_GRANULARITY, &base)) goto fail;
    p->base = (uintptr_t)base;
    p->min = p->base + PA_GRANULARITY;
    p->limit = p->base + span - PA_GRANULARITY;
    p->free_hint = 1;
    p->alloc_pool.item_size = sizeof(pa_alloc_t);
    p->pin_pool.item_size = sizeof(pa_pin_t);
    if (options && options->commit_limit)
        p->commit_limit_pages = _pa_align_up(options->commit_limit, PA_PAGE_SIZE) >> PA_PAGE_SHIFT;
    pthread_mutex_init(&p->lock, NULL);
    if (_pa_os_install_fault_handler(mm_fault)) goto fail;
    for (int i = 0; i < PA_MAX_PROCESSES && p->registry_slot < 0; i++) {
        pa_process_t *expected = NULL;
        if (atomic_compare_exchange_strong(&registry[i], &expected, p)) p->registry_slot = i;
    }
    if (p->registry_slot < 0) goto fail;
    if (status) *status = STATUS_SUCCESS;
    return p;
fail:
    if (p) {
        if (p->base) _pa_os_unmap((void *)p->base, p->span);
        _pa_os_free(p->used, ((p->nslots + 63) / 64) * sizeof *p->used);
        _pa_os_free(p->slots, p->nslots * sizeof *p->slots);
        _pa_os_free(p->pages, p->npages * sizeof *p->pages);
        _pa_os_free(p, sizeof *p);
    }
    if (status) *status = st;
    return NULL;
}

#define PA_MAX_RUNDOWN 8
static void (*rundown_fns[PA_MAX_RUNDOWN])(pa_process_t *);
static int nrundown;
static pthread_mutex_t rundown_lock = PTHREAD_MUTEX_INITIALIZER;

int pa_process_register_rundown(void (*fn)(pa_process_t *p))
{
    int r = 0;
    pthread_mutex_lock(&rundown_lock);
    int known = 0;
    for (int i = 0; i < nrundown; i++) known |= rundown_fns[i] == fn;
    if (!known) {
        if (nrundown < PA_MAX_RUNDOWN) rundown_fns[nrundown++] = fn;
        else r = -1;
    }
    pthread_mutex_unlock(&rundown_lock);
    return r;
}

NTSTATUS pa_process_destroy(pa_process_t *p)
{
    if (!p) return STATUS_INVALID_HANDLE;
    if (p->is_current) return STATUS_ACCESS_DENIED;
    _pa_lock(p);
    int pinned = p->pins != NULL;
    _pa_unlock(p);
    if (pinned) return PA_STATUS_BUFFER_EXPORTED;
    /* Rundown: the higher layers first, the most recently registered first. */
    pthread_mutex_lock(&rundown_lock);
    int n = nrundown;
    void (*fns[PA_MAX_RUNDOWN])(pa_process_t *);
    memcpy(fns, rundown_fns, sizeof fns);
    pthread_mutex_unlock(&rundown_lock);
    while (n-- > 0) fns[n](p);
    atomic_store(&registry[p->registry_slot], NULL);
    for (size_t i = 0; i < p->nslots; i++) {
        pa_alloc_t *a = p->slots[i];
        if (a && a->section && a->base == p->base + (i << PA_SLOT_SHIFT)) _pa_section_unref(a->section);
    }
    _pa_os_unmap((void *)p->base, p->span);
    _pa_trace_free(p);
    _pa_pool_destroy(&p->alloc_pool);
    _pa_pool_destroy(&p->pin_pool);
    pthread_mutex_destroy(&p->lock);
    _pa_os_free(p->used, ((p->nslots + 63) / 64) * sizeof *p->used);
    _pa_os_free(p->slots, p->nslots * sizeof *p->slots);
    _pa_os_free(p->pages, p->npages * sizeof *p->pages);
    _pa_os_free(p, sizeof *p);
    return STATUS_SUCCESS;
}

/* The smallest address space the current process settles for. */
#define PA_MIN_CURRENT_SPACE ((size_t)16 << 20)

static pa_process_t *current_process;
static pthread_once_t current_once = PTHREAD_ONCE_INIT;

/* PYALLOC_ADDRESS_SPACE (bytes, or with a K, M or G suffix, rounded down to the allocation
 * granularity) sizes the current process's address space. 0 when unset, malformed or too
 * small (then the default applies). Runs before malloc works, so it parses by hand. */
static size_t env_address_space(void)
{
    const char *s = getenv("PYALLOC_ADDRESS_SPACE");
    if (!s || !*s) return 0;
    size_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > ((size_t)1 << 46)) return 0;
        v = v * 10 + (size_t)(*s - '0');
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; s++; break;
    case 'm': case 'M': shift = 20; s++; break;
    case 'g': case 'G': shift = 30; s++; break;
    default: break;
    }
    if (*s || v > ((size_t)1 << 46) >> shift) return 0;
    v = (v << shift) & ~(PA_GRANULARITY - 1);
    return v < 3 * PA_GRANULARITY ? 0 : v; /* pa_process_create's least */
}

/* The current process's address space is PYALLOC_ADDRESS_SPACE's size, else the default but
 * at most half the host's limit on the address space (`ulimit -v`), leaving the rest to the
 * program's stacks, libraries and own mappings; halved again while the host refuses the
 * reservation (valgrind refuses 64 GiB), down to PA_MIN_CURRENT_SPACE. Under a limit a
 * program then runs with less room instead of not at all. */
static void create_current(void)
{
    size_t span = env_address_space();
    if (!span) {
        size_t half = (_pa_os_address_limit() / 2) & ~(PA_GRANULARITY - 1);
        span = half < PA_DEFAULT_ADDRESS_SPACE ? half : PA_DEFAULT_ADDRESS_SPACE;
        if (span < PA_MIN_CURRENT_SPACE) span = PA_MIN_CURRENT_SPACE;
    }
    for (;;) {
        pa_process_options_t o = {0};
        o.address_space = span;
        current_process = pa_process_create(&o, NULL);
        if (current_process || span / 2 < PA_MIN_CURRENT_SPACE) break;
        span = (span / 2) & ~(PA_GRANULARITY - 1);
    }
    if (!current_process) {
        char msg[128]; /* (snprintf of integers allocates nothing) */
        snprintf(msg, sizeof msg, "pyalloc: the host refused even a %zu MiB reservation for this "
                 "process's address space\n", span >> 20);
        _pa_os_say(msg);
        abort();
    }
    current_process->is_current = 1;
}

pa_process_t *pa_process_current(void)
{
    pthread_once(&current_once, create_current);
    return current_process;
}

pa_process_t *_pa_process_current_if_made(void)
{
    return __atomic_load_n(&current_process, __ATOMIC_ACQUIRE);
}

void pa_process_stats(pa_process_t *p, pa_vm_stats_t *out)
{
    _pa_lock(p);
    out->reserved = p->reserved_bytes;
    out->committed = p->committed_pages << PA_PAGE_SHIFT;
    out->peak_committed = p->peak_committed_pages << PA_PAGE_SHIFT;
    out->commit_limit = p->commit_limit_pages << PA_PAGE_SHIFT;
    out->allocations = p->nallocs;
    out->pins = p->npins;
    out->guard_hits = p->guard_hits;
    out->watch_faults = p->watch_faults;
    _pa_unlock(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Query                                                                                       */

/* Fills mbi for addr, which lies in [p->base, p->limit). Returns the region's end. */
static uintptr_t query_locked(pa_process_t *p, uintptr_t addr, MEMORY_BASIC_INFORMATION *mbi)
{
    uintptr_t page = _pa_align_down(addr, PA_PAGE_SIZE);
    pa_alloc_t *a = _pa_alloc_at_locked(p, page);
    memset(mbi, 0, sizeof *mbi);
    mbi->BaseAddress = (void *)page;
    if (!a) {
        uintptr_t end;
        if (page < p->min) {
            end = p->min;
        } else {
            size_t slot = (page - p->base) >> PA_SLOT_SHIFT;
            size_t next = slot_scan_up(p, slot + 1, p->nslots - 1, 1);
            end = p->base + ((uintptr_t)next << PA_SLOT_SHIFT);
            if (end > p->limit) end = p->limit;
        }
        mbi->RegionSize = end - page;
        mbi->State = MEM_FREE;
        mbi->Protect = PAGE_NOACCESS;
        return end;
    }
    sync_view_locked(p, a);
    const pa_pstate_t *s = _pa_pstate(p, page);
    size_t n = (a->base + a->size - page) >> PA_PAGE_SHIFT, i = 1;
    pa_pstate_t key = s[0] & PS_QUERY_MASK;
    while (i < n && (s[i] & PS_QUERY_MASK) == key) i++;
    mbi->AllocationBase = (void *)a->base;
    mbi->AllocationProtect = a->alloc_prot;
    mbi->RegionSize = i << PA_PAGE_SHIFT;
    mbi->State = (key & PS_COMMITTED) ? MEM_COMMIT : MEM_RESERVE;
    mbi->Protect = _pa_pstate_protect(key, a->alloc_prot);
    mbi->Type = a->type;
    return page + mbi->RegionSize;
}

NTSTATUS pa_nt_query_virtual_memory(pa_process_t *p, const void *address,
                                    MEMORY_BASIC_INFORMATION *mbi)
{
    uintptr_t addr = (uintptr_t)address;
    if (addr >= p->limit) return STATUS_INVALID_PARAMETER;
    if (addr < p->base) {
        /* Below the simulated space: free and never usable, as the first 64 KiB on Windows. */
        memset(mbi, 0, sizeof *mbi);
        mbi->BaseAddress = (void *)_pa_align_down(addr, PA_PAGE_SIZE);
        mbi->RegionSize = p->min - (uintptr_t)mbi->BaseAddress;
        mbi->State = MEM_FREE;
        mbi->Protect = PAGE_NOACCESS;
        return STATUS_SUCCESS;
    }
    _pa_lock(p);
    query_locked(p, addr, mbi);
    _pa_unlock(p);
    return STATUS_SUCCESS;
}

int pa_process_walk(pa_process_t *p, int (*fn)(const pa_region_info_t *r, void *arg), void *arg)
{
    int result = 0;
    _pa_lock(p);
    uintptr_t addr = p->min;
    while (addr < p->limit && !result) {
        pa_region_info_t r;
        memset(&r, 0, sizeof r);
        size_t slot = (addr - p->base) >> PA_SLOT_SHIFT;
        pa_alloc_t *owner_of_slot = p->slots[slot];
        uintptr_t end = query_locked(p, addr, &r.mbi);
        if (r.mbi.State == MEM_FREE && owner_of_slot) {
            /* The tail of an allocation's last slot: free but unusable. */
            end = _pa_align_up(owner_of_slot->base + owner_of_slot->size, PA_GRANULARITY);
            r.mbi.RegionSize = end - addr;
            r.unusable = 1;
        } else if (r.mbi.State != MEM_FREE) {
            r.owner = p->slots[slot]->owner;
            r.mapped_file = p->slots[slot]->section && p->slots[slot]->section->file_backed;
        }
        result = fn(&r, arg);
        addr = end;
    }
    _pa_unlock(p);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Commit, decommit, release                                                                   */

static NTSTATUS charge_locked(pa_process_t *p, size_t new_pages)
{
    if (p->commit_limit_pages && p->committed_pages + new_pages > p->commit_limit_pages)
        return STATUS_COMMITMENT_LIMIT;
    p->committed_pages += new_pages;
    if (p->committed_pages > p->peak_committed_pages) p->peak_committed_pages = p->committed_pages;
    return STATUS_SUCCESS;
}

/* Is every state of s[0, n) (n >= 1) equal to s[0]? Compares four states a word. */
static int states_uniform(const pa_pstate_t *s, size_t n)
{
    uint64_t v = s[0] * 0x0001000100010001ull, diff = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        diff |= w ^ v;
    }
    for (; i < n; i++) diff |= (uint64_t)(s[i] ^ s[0]);
    return diff == 0;
}

/* Sets s[0, n) to v, four states a word. */
static void states_fill(pa_pstate_t *s, size_t n, pa_pstate_t v)
{
    uint64_t w = v * 0x0001000100010001ull;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) memcpy(s + i, &w, sizeof w);
    for (; i < n; i++) s[i] = v;
}

/* The state a page in state s takes when committed (or re-protected) with `bits`: write
 * watch and MEM_RESET survive a protection change (the host may still drop a reset page, so
 * MEM_RESET_UNDO must keep checking it), as do a view page's mapping bits. */
static inline pa_pstate_t committed_state(pa_pstate_t s, pa_pstate_t bits)
{
    return (pa_pstate_t)((s & (PS_WATCH_CLEAN | PS_RESET | PS_RESET_ARMED | PS_RESET_LOST | PS_PRIVATE_MAP |
                               PS_COPIED)) |
                         bits);
}

/* Commits (or re-protects committed) pages [addr, addr + n pages) of one allocation. On
 * failure nothing changed. The host protection is applied first, from the states the pages
 * will take, one system call per run of equal protection; the states are written only once
 * the host agreed, so a refusal is undone from the untouched states (no copy of them). A
 * private allocation's run whose host protection already matches (the invariant of
 * internal.h) needs no call; a view's pages may just have been remapped, so it always gets
 * one. */
static NTSTATUS commit_locked(pa_process_t *p, pa_alloc_t *a, uintptr_t addr, size_t n,
                              int index, int guard)
{
    pa_pstate_t *s = _pa_pstate(p, addr);
    pa_pstate_t bits = (pa_pstate_t)(PS_COMMITTED | (unsigned)index | (guard ? PS_GUARD : 0));
    if (states_uniform(s, n)) {
        /* One state throughout (a fresh reservation, a whole committed block): one run, one
         * charge, one fill, four pages a word. A 512 MiB VirtualAlloc spent most of its time
         * in the per-page loops below. */
        pa_pstate_t to = committed_state(s[0], bits);
        size_t fresh = a->type == MEM_PRIVATE && !(s[0] & PS_COMMITTED) ? n : 0;
        NTSTATUS st = charge_locked(p, fresh);
        if (st) return st;
        if (_pa_os_protect((void *)addr, n << PA_PAGE_SHIFT, host_prot(to))) {
            apply_host_locked(p, addr, n);
            p->committed_pages -= fresh;
            return STATUS_NO_MEMORY;
        }
        states_fill(s, n, to);
        return STATUS_SUCCESS;
    }
    size_t fresh = 0;
    /* The commit charge counts private pages; a section's pages are charged to it. */
    if (a->type == MEM_PRIVATE)
        for (size_t i = 0; i < n; i++) fresh += !(s[i] & PS_COMMITTED);
    NTSTATUS st = charge_locked(p, fresh);
    if (st) return st;
    /* Skipping runs whose host protection already matches saves calls, but leaves the host
     * with more, unmerged mappings (a whole-range mprotect merges them); measured slower on
     * the heap's medium workload, so every run is applied. */
    int skip_same = 0;
    size_t i = 0;
    while (i < n) {
        int prot = host_prot(committed_state(s[i], bits));
        int same = host_prot(s[i]) == prot;
        size_t j = i + 1;
        while (j < n && host_prot(committed_state(s[j], bits)) == prot &&
               (!skip_same || (host_prot(s[j]) == prot) == same))
            j++;
        if (!(skip_same && same) &&
            _pa_os_protect((void *)(addr + (i << PA_PAGE_SHIFT)), (j - i) << PA_PAGE_SHIFT, prot)) {
            apply_host_locked(p, addr, j); /* back to the old states' protection */
            p->committed_pages -= fresh;
            return STATUS_NO_MEMORY;
        }
        i = j;
    }
    for (i = 0; i < n; i++) s[i] = committed_state(s[i], bits);
    return STATUS_SUCCESS;
}

/* Decommits pages [addr, addr + n pages): contents dropped, write-watch bits kept. The host
 * range is replaced only if a page was committed (never-committed private pages hold nothing
 * and are already inaccessible) or it is a view's (whose file mapping must go). */
static void decommit_locked(pa_process_t *p, uintptr_t addr, size_t n, int view)
{
    pa_pstate_t *s = _pa_pstate(p, addr);
    size_t dropped = 0, i = 0;
    /* Four states a word: their PS_COMMITTED bits counted, everything but PS_WATCH_CLEAN
     * cleared (a large block's reservation is committed only in part, so one state
     * throughout is not the rule here). */
    const uint64_t four = 0x0001000100010001ull;
    _Static_assert(PS_COMMITTED == 1u << 4, "the count below shifts bit 4 down");
    for (; i + 4 <= n; i += 4) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        dropped += (size_t)((((w >> 4) & four) * four) >> 48); /* PS_COMMITTED is bit 4 */
        w &= PS_WATCH_CLEAN * four;
        memcpy(s + i, &w, sizeof w);
    }
    for (; i < n; i++) {
        dropped += (s[i] & PS_COMMITTED) != 0;
        s[i] &= PS_WATCH_CLEAN;
    }
    p->committed_pages -= dropped;
    if (dropped || view) _pa_os_decommit((void *)addr, n << PA_PAGE_SHIFT);
}

static void release_locked(pa_process_t *p, pa_alloc_t *a)
{
    size_t n = a->size >> PA_PAGE_SHIFT;
    int view = a->section != NULL;
    if (a->section) {
        /* A view's pages are charged to its section: clear them before decommit_locked,
         * which then only replaces the mapping. */
        memset(_pa_pstate(p, a->base), 0, n * sizeof(pa_pstate_t));
        _pa_section_unref(a->section);
        a->section = NULL;
    }
    decommit_locked(p, a->base, n, view);
    memset(_pa_pstate(p, a->base), 0, n * sizeof(pa_pstate_t));
    clear_slots_locked(p, a);
    p->reserved_bytes -= a->size;
    p->nallocs--;
    _pa_pool_put(&p->alloc_pool, a);
}

static NTSTATUS reserve_locked(pa_process_t *p, uintptr_t *base, size_t size, DWORD type,
                               DWORD mem_type, DWORD protect, pa_owner_t owner, pa_alloc_t **out)
{
    size_t nslots = _pa_align_up(size, PA_GRANULARITY) >> PA_SLOT_SHIFT;
    size_t first;
    if (*base) {
        first = (*base - p->base) >> PA_SLOT_SHIFT;
        if (slot_scan_up(p, first, first + nslots, 1) != first + nslots)
            return STATUS_CONFLICTING_ADDRESSES;
    } else {
        first = find_free_slots_locked(p, nslots, (type & MEM_TOP_DOWN) != 0);
        if (first == (size_t)-1) return STATUS_NO_MEMORY;
    }
    pa_alloc_t *a = _pa_pool_get(&p->alloc_pool);
    if (!a) return STATUS_NO_MEMORY;
    a->base = p->base + ((uintptr_t)first << PA_SLOT_SHIFT);
    a->size = size;
    a->alloc_prot = protect;
    a->type = mem_type;
    a->owner = owner;
    if (type & MEM_WRITE_WATCH) {
        a->flags |= PA_ALLOC_WRITE_WATCH;
        pa_pstate_t *s = _pa_pstate(p, a->base);
        for (size_t i = 0; i < size >> PA_PAGE_SHIFT; i++) s[i] = PS_WATCH_CLEAN;
    }
    mark_slots_locked(p, a);
    p->reserved_bytes += size;
    p->nallocs++;
    *base = a->base;
    *out = a;
    return STATUS_SUCCESS;
}

/* Does the page at `page`, readable by the host, hold only zeros? */
static int page_is_zero(uintptr_t page)
{
    const volatile uint64_t *w = (const volatile uint64_t *)page;
    uint64_t any = 0;
    for (size_t i = 0; i < PA_PAGE_SIZE / sizeof *w && !any; i += 8)
        any = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    return !any;
}

/* MEM_RESET and MEM_RESET_UNDO on [start, end), which must lie in one allocation.
 *
 * MEM_RESET lets the host drop the pages (MADV_FREE): a dropped page reads as zeros, and a
 * later read maps the host's zero page, so residency alone cannot tell an undo whether data
 * was lost. So MEM_RESET notes the pages that cannot lose anything (PS_RESET_ZERO): those the
 * host never populated (pagemap: neither present nor swapped) and resident readable ones that
 * hold only zeros. MEM_RESET_UNDO writes to each other reset page (which ends the host's lazy
 * free, so nothing can be dropped after the look) and reports a loss for one that now holds
 * only zeros. A page the program writes again before the undo could be dropped first and then
 * rewritten (its old data gone, the new write in a fresh zero page): so MEM_RESET also takes
 * write access away from the host's mapping of each page with data (PS_RESET_ARMED), and the
 * first write (fault handler or pa_mm_write) marks the page lost if it reads as zeros by then.
 * (A page that held zeros but was not readable, or that the program zeroed in between, also
 * counts as lost: the call then fails although nothing was dropped, which costs a caller the
 * re-creation of its data, never a wrong success.) */
static NTSTATUS reset_locked(pa_process_t *p, uintptr_t start, uintptr_t end, int undo)
{
    pa_pstate_t *s = _pa_pstate(p, start);
    size_t n = (end - start) >> PA_PAGE_SHIFT;
    if (!undo) {
        unsigned char fl[64];
        for (size_t i = 0; i < n; i++) {
            if (!(s[i] & PS_COMMITTED)) continue;
            uintptr_t page = start + (i << PA_PAGE_SHIFT);
            if (i % 64 == 0 && _pa_os_page_flags((void *)page, n - i < 64 ? n - i : 64, fl))
                memset(fl, PA_OS_PAGE_PRESENT, sizeof fl); /* unknown: look at every page */
            unsigned f = fl[i % 64];
            int zero = !f || ((f & PA_OS_PAGE_PRESENT) && (host_prot(s[i]) & PA_OS_READ) &&
                              page_is_zero(page));
            s[i] = (pa_pstate_t)((s[i] & ~(PS_RESET_ZERO | PS_RESET_ARMED | PS_RESET_LOST)) | PS_RESET |
                                 (zero ? PS_RESET_ZERO : PS_RESET_ARMED));
        }
        if (apply_host_locked(p, start, n)) return STATUS_NO_MEMORY;
        _pa_os_reset((void *)start, end - start);
        return STATUS_SUCCESS;
    }
    NTSTATUS st = STATUS_SUCCESS;
    for (size_t i = 0; i < n; i++) {
        if (!(s[i] & PS_RESET)) continue;
        int was_zero = (s[i] & PS_RESET_ZERO) != 0, lost = (s[i] & PS_RESET_LOST) != 0;
        int armed = (s[i] & PS_RESET_ARMED) != 0;
        s[i] &= (pa_pstate_t)~(PS_RESET | PS_RESET_ZERO | PS_RESET_ARMED | PS_RESET_LOST);
        uintptr_t page = start + (i << PA_PAGE_SHIFT);
        if (armed && apply_host_locked(p, page, 1)) st = STATUS_NO_MEMORY;
        if (lost) st = (NTSTATUS)0xC0000001; /* dropped, then written again */
        if (was_zero || !armed) continue; /* nothing to lose, or written since (checked then) */
        int prot = host_prot(s[i]);
        if (!(prot & PA_OS_WRITE)) _pa_os_protect((void *)page, PA_PAGE_SIZE, PA_OS_READ | PA_OS_WRITE);
        volatile unsigned char *b = (volatile unsigned char *)page;
        *b = *b; /* from here on the host keeps the page */
        if (page_is_zero(page)) st = (NTSTATUS)0xC0000001; /* STATUS_UNSUCCESSFUL: data lost */
        if (!(prot & PA_OS_WRITE)) _pa_os_protect((void *)page, PA_PAGE_SIZE, prot);
    }
    return st;
}

static NTSTATUS remap_view_pages_locked(pa_process_t *p, pa_alloc_t *a, uintptr_t start, size_t n,
                                        int index);

static int owner_ok(const pa_alloc_t *a, pa_owner_t owner)
{
    return owner == PA_OWNER_ANY || a->owner == owner;
}

NTSTATUS pa_nt_allocate_virtual_memory(pa_process_t *p, void **base_io, size_t *size_io,
                                       DWORD type, DWORD protect, pa_owner_t owner)
{
    uintptr_t addr = (uintptr_t)*base_io;
    size_t size = *size_io;
    int index = 0, guard = 0, copy = 0;
    NTSTATUS st;
    /* Zero size is checked first for every type (uv:NtAllocateVirtualMemory). */
    if (!size) return STATUS_INVALID_PARAMETER;
    int reset = type == MEM_RESET || type == MEM_RESET_UNDO;
    if (!reset) {
        if ((type & MEM_LARGE_PAGES) && (type & MEM_COMMIT) && (type & MEM_RESERVE))
            return STATUS_PRIVILEGE_NOT_HELD; /* no SeLockMemoryPrivilege here */
        if (type & ~(DWORD)(MEM_COMMIT | MEM_RESERVE | MEM_TOP_DOWN | MEM_WRITE_WATCH))
            return STATUS_INVALID_PARAMETER;
        if (!(type & (MEM_COMMIT | MEM_RESERVE))) return STATUS_INVALID_PARAMETER;
        if ((type & MEM_WRITE_WATCH) && !(type & MEM_RESERVE)) return STATUS_INVALID_PARAMETER;
        if ((st = check_protect(protect, 1, &index, &guard))) return st;
        if (!addr) type |= MEM_RESERVE; /* MEM_COMMIT alone at NULL reserves too */
        /* Copy-on-write is for views only (fact 110); a view may be committed with it. */
        copy = index == 3 || index == 7;
        if (copy && (type & MEM_RESERVE)) return STATUS_INVALID_PAGE_PROTECTION;
    } else if (!addr) {
        return STATUS_INVALID_PARAMETER;
    }
    /* Rounding: reservations start on the granularity, commits on a page; the end is rounded
     * up to a page (MS:VirtualAlloc). */
    uintptr_t start, end;
    if (addr) {
        start = _pa_align_down(addr, (type & MEM_RESERVE) ? PA_GRANULARITY : PA_PAGE_SIZE);
        if (addr + size < addr || addr + size > p->limit || start < p->min)
            return STATUS_INVALID_PARAMETER;
        end = _pa_align_up(addr + size, PA_PAGE_SIZE);
    } else {
        if (size > p->limit - p->min) return STATUS_WORKING_SET_LIMIT_RANGE;
        start = 0;
        end = _pa_align_up(size, PA_PAGE_SIZE);
    }
    size_t len = end - start;

    _pa_lock(p);
    pa_alloc_t *a = NULL;
    if (type & MEM_RESERVE) {
        st = reserve_locked(p, &start, len, type, MEM_PRIVATE, protect, owner, &a);
        if (st) goto out;
        if (type & MEM_COMMIT) {
            st = commit_locked(p, a, start, len >> PA_PAGE_SHIFT, index, guard);
            if (st) release_locked(p, a);
        }
        goto out;
    }
    a = _pa_alloc_at_locked(p, start);
    if (!a || end > a->base + a->size) {
        st = STATUS_NOT_MAPPED_VIEW;
        goto out;
    }
    if (!owner_ok(a, owner)) {
        st = PA_STATUS_OWNED;
        goto out;
    }
    if (copy && a->type == MEM_PRIVATE) {
        st = STATUS_INVALID_PAGE_PROTECTION;
        goto out;
    }
    if (a->type == MEM_MAPPED) {
        if (a->section->file_backed) { /* views of files are always committed (fact 100) */
            st = reset ? STATUS_INVALID_PARAMETER : STATUS_ALREADY_COMMITTED;
            goto out;
        }
        if (!reset) {
            /* Pagefile views: the access asked for must be the view's (facts 98-99). */
            if ((st = check_protect(protect, 1, &index, &guard))) goto out;
            unsigned want = _pa_protect_access(protect), have = _pa_protect_access(a->alloc_prot);
            if ((want & have) != want) {
                st = STATUS_INVALID_PAGE_PROTECTION;
                goto out;
            }
            sync_view_locked(p, a);
            _pa_section_commit(a->section, (a->offset + (start - a->base)) >> PA_PAGE_SHIFT,
                               len >> PA_PAGE_SHIFT);
        }
    }
    if (reset) {
        st = reset_locked(p, start, end, type == MEM_RESET_UNDO);
        goto out;
    }
    if (p->pins) {
        pa_pstate_t ns = (pa_pstate_t)(PS_COMMITTED | (unsigned)index | (guard ? PS_GUARD : 0));
        if (pins_block_locked(p, start, end, 0, ns)) {
            st = PA_STATUS_BUFFER_EXPORTED;
            goto out;
        }
    }
    /* As for VirtualProtect: copy-on-write pages of a shared view get a private mapping. */
    if (a->type == MEM_MAPPED &&
        (st = remap_view_pages_locked(p, a, start, len >> PA_PAGE_SHIFT, index)))
        goto out;
    st = commit_locked(p, a, start, len >> PA_PAGE_SHIFT, index, guard);
    if (a->type == MEM_MAPPED) a->gen = _pa_section_generation(a->section);
out:
    _pa_unlock(p);
    if (st == STATUS_SUCCESS) {
        *base_io = (void *)start;
        *size_io = len;
    }
    /* One event per effect: a reservation, then its commit. */
    if ((type & MEM_RESERVE) && !reset)
        _pa_trace(p, PA_OP_RESERVE, st ? addr : start, st ? size : len, protect, type, st);
    if ((type & MEM_COMMIT) && !reset && (st == STATUS_SUCCESS || !(type & MEM_RESERVE)))
        _pa_trace(p, PA_OP_COMMIT, st ? addr : start, st ? size : len, protect, type, st);
    if (reset) _pa_trace(p, PA_OP_RESET, start, len, type, 0, st);
    return st;
}

NTSTATUS pa_nt_free_virtual_memory(pa_process_t *p, void **base_io, size_t *size_io, DWORD type,
                                   pa_owner_t owner)
{
    uintptr_t addr = (uintptr_t)*base_io;
    size_t size = *size_io;
    NTSTATUS st = STATUS_SUCCESS;
    if (type != MEM_DECOMMIT && type != MEM_RELEASE) return STATUS_INVALID_PARAMETER;
    if (!addr || addr < p->min || addr >= p->limit) return STATUS_INVALID_PARAMETER;
    if (addr + size < addr) return STATUS_INVALID_PARAMETER;
    uintptr_t start = _pa_align_down(addr, PA_PAGE_SIZE);
    _pa_lock(p);
    pa_alloc_t *a = _pa_alloc_at_locked(p, start);
    uintptr_t end;
    if (!a) {
        st = STATUS_MEMORY_NOT_ALLOCATED;
        goto out;
    }
    if (a->type != MEM_PRIVATE) { /* views are unmapped, not freed (k32:test_MapViewOfFile) */
        st = STATUS_INVALID_PARAMETER;
        goto out;
    }
    if (!owner_ok(a, owner)) {
        st = PA_STATUS_OWNED;
        goto out;
    }
    if (size == 0) {
        /* The whole allocation, from its base. */
        if (start != a->base) {
            st = STATUS_FREE_VM_NOT_AT_BASE;
            goto out;
        }
        end = a->base + a->size;
    } else {
        end = _pa_align_up(addr + size, PA_PAGE_SIZE);
        if (end > a->base + a->size) {
            st = STATUS_UNABLE_TO_FREE_VM;
            goto out;
        }
    }
    if (p->pins && pins_block_locked(p, start, end, 1, 0)) {
        st = PA_STATUS_BUFFER_EXPORTED;
        goto out;
    }
    if (type == MEM_RELEASE) {
        /* Partial release (Windows 10's NT-level split) is not modelled: only whole
         * allocations are released. */
        if (start != a->base || end != a->base + a->size) {
            st = STATUS_UNABLE_TO_FREE_VM;
            goto out;
        }
        release_locked(p, a);
    } else {
        decommit_locked(p, start, (end - start) >> PA_PAGE_SHIFT, 0);
    }
    *base_io = (void *)start;
    *size_io = end - start;
out:
    _pa_unlock(p);
    _pa_trace(p, type == MEM_RELEASE ? PA_OP_RELEASE : PA_OP_DECOMMIT, st ? addr : start,
              st ? size : *size_io, type, 0, st);
    return st;
}

/* Before view pages change protection: a copy-on-write protection needs a private mapping of
 * the section (fact 108: the file must not see the writes); leaving copy-on-write on a shared
 * view before any write returns the page to the shared mapping. */
static NTSTATUS remap_view_pages_locked(pa_process_t *p, pa_alloc_t *a, uintptr_t start, size_t n,
                                        int index)
{
    int copy = index == 3 || index == 7;
    int view_copy = (a->alloc_prot & (PAGE_WRITECOPY | PAGE_EXECUTE_WRITECOPY)) != 0;
    pa_pstate_t *s = _pa_pstate(p, start);
    for (size_t i = 0; i < n; i++) {
        int private_map = (s[i] & PS_PRIVATE_MAP) != 0;
        if (copy == private_map || (s[i] & PS_COPIED) || view_copy) continue;
        uintptr_t page = start + (i << PA_PAGE_SHIFT);
        uint64_t off = a->section->data_offset + a->offset + (page - a->base);
        if (_pa_os_map_fd((void *)page, PA_PAGE_SIZE, PA_OS_NONE, a->section->fd, off, !copy))
            return STATUS_NO_MEMORY;
        s[i] = (pa_pstate_t)(copy ? (s[i] | PS_PRIVATE_MAP) : (s[i] & ~PS_PRIVATE_MAP));
        apply_host_locked(p, page, 1);
    }
    return STATUS_SUCCESS;
}

NTSTATUS pa_nt_protect_virtual_memory(pa_process_t *p, void **base_io, size_t *size_io,
                                      DWORD protect, DWORD *old_protect, pa_owner_t owner)
{
    uintptr_t addr = (uintptr_t)*base_io;
    size_t size = *size_io;
    int index, guard;
    NTSTATUS st;
    if (addr < p->min || addr >= p->limit || addr + size < addr) return STATUS_INVALID_PARAMETER;
    uintptr_t start = _pa_align_down(addr, PA_PAGE_SIZE);
    uintptr_t end = _pa_align_up(addr + (size ? size : 1), PA_PAGE_SIZE);
    _pa_lock(p);
    pa_alloc_t *a = _pa_alloc_at_locked(p, start);
    if (!a || end > a->base + a->size) { /* one allocation only (MS:VirtualProtect) */
        st = STATUS_INVALID_PARAMETER;
        goto out;
    }
    if ((st = check_protect(protect, a->type != MEM_PRIVATE, &index, &guard))) goto out;
    if (!old_protect) {
        st = STATUS_ACCESS_VIOLATION;
        goto out;
    }
    if (!owner_ok(a, owner)) {
        st = PA_STATUS_OWNED;
        goto out;
    }
    if (a->type == MEM_MAPPED) {
        /* A view's pages may only narrow the view's access (fact 59). */
        unsigned want = _pa_protect_access(protect), have = _pa_protect_access(a->alloc_prot);
        if ((want & have) != want) {
            st = STATUS_INVALID_PAGE_PROTECTION;
            goto out;
        }
        sync_view_locked(p, a);
    }
    pa_pstate_t *s = _pa_pstate(p, start);
    size_t n = (end - start) >> PA_PAGE_SHIFT;
    for (size_t i = 0; i < n; i++) {
        if (!(s[i] & PS_COMMITTED)) {
            st = STATUS_NOT_COMMITTED;
            goto out;
        }
    }
    pa_pstate_t ns = (pa_pstate_t)(PS_COMMITTED | (unsigned)index | (guard ? PS_GUARD : 0));
    if (p->pins && pins_block_locked(p, start, end, 0, ns)) {
        st = PA_STATUS_BUFFER_EXPORTED;
        goto out;
    }
    *old_protect = _pa_pstate_protect(s[0], a->alloc_prot);
    if (a->type == MEM_MAPPED && (st = remap_view_pages_locked(p, a, start, n, index))) goto out;
    /* commit_locked on committed pages charges nothing and only changes protection. */
    st = commit_locked(p, a, start, n, index, guard);
    if (st == STATUS_SUCCESS) {
        *base_io = (void *)start;
        *size_io = end - start;
    }
out:
    _pa_unlock(p);
    _pa_trace(p, PA_OP_PROTECT, st ? addr : start, st ? size : end - start, protect,
              st ? 0 : *old_protect, st);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Write watch                                                                                 */

/* The write-watched allocation holding [base, base + size), or NULL (STATUS_INVALID_PARAMETER
 * for the caller). */
static pa_alloc_t *watched_locked(pa_process_t *p, uintptr_t base, size_t size)
{
    if (base < p->min || base >= p->limit || base + size < base) return NULL;
    pa_alloc_t *a = _pa_alloc_at_locked(p, base);
    if (!a || !(a->flags & PA_ALLOC_WRITE_WATCH) || base + size > a->base + a->size) return NULL;
    return a;
}

/* Re-arms the watch on [start, end) (page-rounded). */
static void rearm_locked(pa_process_t *p, uintptr_t start, uintptr_t end)
{
    pa_pstate_t *s = _pa_pstate(p, start);
    size_t n = (end - start) >> PA_PAGE_SHIFT;
    for (size_t i = 0; i < n; i++) s[i] |= PS_WATCH_CLEAN;
    apply_host_locked(p, start, n);
}

NTSTATUS pa_nt_get_write_watch(pa_process_t *p, DWORD flags, void *base, size_t size,
                               void **addresses, ULONG_PTR *count, ULONG *granularity)
{
    /* Order of checks as k32:test_write_watch pins them (see the reference, fact 81). */
    if (flags & ~(DWORD)WRITE_WATCH_FLAG_RESET) return STATUS_INVALID_PARAMETER;
    if (!size) return STATUS_INVALID_PARAMETER;
    if (!count) return STATUS_ACCESS_VIOLATION;
    if (!*count) return STATUS_INVALID_PARAMETER;
    if (!addresses || !granularity) return STATUS_ACCESS_VIOLATION;
    uintptr_t start = _pa_align_down((uintptr_t)base, PA_PAGE_SIZE);
    _pa_lock(p);
    NTSTATUS st = STATUS_SUCCESS;
    if (!watched_locked(p, (uintptr_t)base, size)) {
        st = STATUS_INVALID_PARAMETER;
        goto out;
    }
    uintptr_t end = _pa_align_up((uintptr_t)base + size, PA_PAGE_SIZE), scanned = start;
    const pa_pstate_t *s = _pa_pstate(p, start);
    ULONG_PTR found = 0;
    for (uintptr_t a = start; a < end && found < *count; a += PA_PAGE_SIZE, s++) {
        if (!(*s & PS_WATCH_CLEAN)) addresses[found++] = (void *)a;
        scanned = a + PA_PAGE_SIZE;
    }
    if (flags & WRITE_WATCH_FLAG_RESET) rearm_locked(p, start, scanned);
    *count = found;
    *granularity = (ULONG)PA_PAGE_SIZE;
out:
    _pa_unlock(p);
    return st;
}

NTSTATUS pa_nt_reset_write_watch(pa_process_t *p, void *base, size_t size)
{
    if (!size) return STATUS_INVALID_PARAMETER;
    _pa_lock(p);
    NTSTATUS st = STATUS_SUCCESS;
    if (!watched_locked(p, (uintptr_t)base, size))
        st = STATUS_INVALID_PARAMETER;
    else
        rearm_locked(p, _pa_align_down((uintptr_t)base, PA_PAGE_SIZE),
                     _pa_align_up((uintptr_t)base + size, PA_PAGE_SIZE));
    _pa_unlock(p);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Checked access and pins                                                                     */

/* Checks that every page of [start, start + size) may be read (or written), in address order,
 * as a real access would meet them: the first guard page raises (and loses its guard), the
 * first inaccessible page is an access violation. size > 0. */
static NTSTATUS check_access_locked(pa_process_t *p, uintptr_t start, size_t size, int write,
                                    uintptr_t *fault)
{
    uintptr_t end = start + size, space_end = p->base + p->span;
    if (start < p->base || start >= space_end) {
        *fault = start;
        return STATUS_ACCESS_VIOLATION;
    }
    /* A range running past the simulated space is checked in order up to its end; the
     * never-usable top slot faults first. */
    int beyond = end < start || end > space_end;
    if (beyond) end = space_end;
    for (uintptr_t page = _pa_align_down(start, PA_PAGE_SIZE); page < end; page += PA_PAGE_SIZE) {
        uintptr_t at = page < start ? start : page;
        pa_alloc_t *a = _pa_alloc_at_locked(p, page);
        if (a && a->section) sync_view_locked(p, a);
        pa_pstate_t *s = a ? _pa_pstate(p, page) : NULL;
        *fault = at;
        if (!s || !(*s & PS_COMMITTED)) return STATUS_ACCESS_VIOLATION;
        if (*s & PS_GUARD) {
            *s &= (pa_pstate_t)~PS_GUARD;
            p->guard_hits++;
            apply_host_locked(p, page, 1);
            _pa_trace(p, PA_OP_GUARD_HIT, at, PA_PAGE_SIZE, write, 0, STATUS_GUARD_PAGE_VIOLATION);
            return STATUS_GUARD_PAGE_VIOLATION;
        }
        if (write ? !state_writable(*s) : !state_readable(*s)) return STATUS_ACCESS_VIOLATION;
    }
    if (beyond) {
        *fault = space_end;
        return STATUS_ACCESS_VIOLATION;
    }
    return STATUS_SUCCESS;
}

/* A write to write-watched pages records it and lifts the host's write protection. */
static void note_writes_locked(pa_process_t *p, uintptr_t start, size_t size)
{
    uintptr_t first = _pa_align_down(start, PA_PAGE_SIZE), end = start + size;
    for (uintptr_t page = first; page < end; page += PA_PAGE_SIZE) {
        pa_pstate_t *s = _pa_pstate(p, page);
        if (*s & (PS_WATCH_CLEAN | PS_RESET_ARMED)) {
            first_write_locked(page, s);
            apply_host_locked(p, page, 1);
        }
        copy_on_write_locked(p, page);
    }
}

/* The copy of a checked read or write, the pages checked: STATUS_IN_PAGE_ERROR (*fault the
 * page) when a file view's page lost its file meanwhile (lost_file_page_locked). */
static NTSTATUS checked_copy(void *to, const void *from, size_t size, uintptr_t *fault)
{
    copy_lost = 0;
    copy_active = 1;
    memcpy(to, from, size);
    copy_active = 0;
    if (!copy_lost) return STATUS_SUCCESS;
    *fault = copy_lost;
    return STATUS_IN_PAGE_ERROR;
}

NTSTATUS pa_mm_read(pa_process_t *p, const void *address, void *out, size_t size,
                    uintptr_t *fault)
{
    if (!size) return STATUS_SUCCESS;
    uintptr_t dummy;
    _pa_lock(p);
    NTSTATUS st = check_access_locked(p, (uintptr_t)address, size, 0, fault ? fault : &dummy);
    if (st == STATUS_SUCCESS) st = checked_copy(out, address, size, fault ? fault : &dummy);
    _pa_unlock(p);
    return st;
}

NTSTATUS pa_mm_write(pa_process_t *p, void *address, const void *data, size_t size,
                     uintptr_t *fault)
{
    if (!size) return STATUS_SUCCESS;
    uintptr_t dummy;
    _pa_lock(p);
    NTSTATUS st = check_access_locked(p, (uintptr_t)address, size, 1, fault ? fault : &dummy);
    if (st == STATUS_SUCCESS) {
        note_writes_locked(p, (uintptr_t)address, size);
        st = checked_copy(address, data, size, fault ? fault : &dummy);
    }
    _pa_unlock(p);
    return st;
}

NTSTATUS pa_mm_pin(pa_process_t *p, void *address, size_t size, int want_write, int *writable,
                   uintptr_t *fault, pa_pin_t **pin_out)
{
    uintptr_t start = (uintptr_t)address, dummy;
    if (!fault) fault = &dummy;
    _pa_lock(p);
    NTSTATUS st = size ? check_access_locked(p, start, size, 0, fault) : STATUS_SUCCESS;
    if (st) goto out;
    int w = want_write && size;
    for (uintptr_t page = _pa_align_down(start, PA_PAGE_SIZE); w && page < start + size;
         page += PA_PAGE_SIZE) {
        pa_pstate_t s = *_pa_pstate(p, page);
        unsigned i = s & PS_PROT_MASK;
        /* Copy-on-write pages are exported read-only: the copy is made by a checked write. */
        w = state_writable(s) && i != 3 && i != 7;
    }
    pa_pin_t *pin = _pa_pool_get(&p->pin_pool);
    if (!pin) {
        st = STATUS_NO_MEMORY;
        goto out;
    }
    pin->start = _pa_align_down(start, PA_PAGE_SIZE);
    pin->end = size ? _pa_align_up(start + size, PA_PAGE_SIZE) : pin->start;
    pin->writable = w;
    pin->next = p->pins;
    if (p->pins) p->pins->prev = pin;
    /* pa_mm_range_pinned reads the head without the lock. */
    __atomic_store_n(&p->pins, pin, __ATOMIC_RELEASE);
    p->npins++;
    *writable = w;
    *pin_out = pin;
out:
    _pa_unlock(p);
    return st;
}

int pa_mm_range_has_owner(pa_process_t *p, const void *address, size_t size, pa_owner_t owner)
{
    uintptr_t start = (uintptr_t)address, end = start + (size ? size : 1);
    if (end < start) end = UINTPTR_MAX;
    if (start < p->base) start = p->base;
    if (end > p->base + p->span) end = p->base + p->span;
    int found = 0;
    _pa_lock(p);
    for (uintptr_t a = _pa_align_down(start, PA_GRANULARITY); a < end && !found; a += PA_GRANULARITY) {
        const pa_alloc_t *al = p->slots[(a - p->base) >> PA_SLOT_SHIFT];
        found = al && al->owner == owner && al->base < end && start < al->base + al->size;
    }
    _pa_unlock(p);
    return found;
}

/* The checks of pa_mm_zero_pages and pa_mm_clear_pages, under the process lock; with
 * `writable`, every page must also be committed read-write (pa_mm_clear_pages writes). */
static NTSTATUS zero_check_locked(pa_process_t *p, uintptr_t start, uintptr_t end, int writable)
{
    const pa_alloc_t *a = _pa_alloc_at_locked(p, start);
    if (!a || end > a->base + a->size || a->type != MEM_PRIVATE || (a->flags & PA_ALLOC_WRITE_WATCH))
        return STATUS_INVALID_PARAMETER;
    for (const pa_pin_t *pin = p->pins; pin; pin = pin->next)
        if (pin->start < end && start < pin->end) return PA_STATUS_BUFFER_EXPORTED;
    for (uintptr_t pg = start; writable && pg < end; pg += PA_PAGE_SIZE)
        if (!_pa_pstate_rw(*_pa_pstate(p, pg))) return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

static NTSTATUS zero_check(pa_process_t *p, uintptr_t start, size_t size, int writable)
{
    uintptr_t end = start + size;
    if (!p || !size || ((start | size) & (PA_PAGE_SIZE - 1)) || end < start)
        return STATUS_INVALID_PARAMETER;
    _pa_lock(p);
    NTSTATUS st = zero_check_locked(p, start, end, writable);
    _pa_unlock(p);
    return st;
}

NTSTATUS pa_mm_zero_pages(pa_process_t *p, void *address, size_t size)
{
    NTSTATUS st = zero_check(p, (uintptr_t)address, size, 0);
    if (st == STATUS_SUCCESS && _pa_os_zero(address, size)) st = STATUS_NO_MEMORY;
    return st;
}

/* The checks of pa_mm_move_pages for one of its ranges, under the process lock: inside one
 * private allocation, not write-watched, not pinned, every page committed with the state
 * *state (read from the first page when *state is 0): read-write or execute-read-write, and
 * nothing else (no guard, no reset, no view bits). */
static NTSTATUS move_check_locked(pa_process_t *p, uintptr_t start, uintptr_t end, pa_pstate_t *state)
{
    NTSTATUS st = zero_check_locked(p, start, end, 0);
    if (st != STATUS_SUCCESS) return st;
    if (!*state) *state = *_pa_pstate(p, start);
    if (!_pa_pstate_rw(*state) || (*state & ~PS_QUERY_MASK)) return STATUS_INVALID_PARAMETER;
    const pa_pstate_t *s = _pa_pstate(p, start);
    for (size_t i = 0, n = (end - start) >> PA_PAGE_SHIFT; i < n; i++)
        if (s[i] != *state) return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

NTSTATUS pa_mm_move_pages(pa_process_t *p, void *dst, void *src, size_t size)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (!p || !size || ((d | s | size) & (PA_PAGE_SIZE - 1)) || d + size < d || s + size < s ||
        (d < s + size && s < d + size))
        return STATUS_INVALID_PARAMETER;
    pa_pstate_t state = 0;
    _pa_lock(p);
    NTSTATUS st = move_check_locked(p, s, s + size, &state);
    if (st == STATUS_SUCCESS) st = move_check_locked(p, d, d + size, &state);
    _pa_unlock(p);
    /* Like pa_mm_zero_pages, the host call runs after the lock is released: the caller keeps
     * both ranges allocated and committed until the call returns. */
    if (st == STATUS_SUCCESS && _pa_os_move(dst, src, size, host_prot(state))) st = STATUS_NOT_SUPPORTED;
    return st;
}

NTSTATUS pa_mm_clear_pages(pa_process_t *p, void *address, size_t size, size_t keep_max,
                           size_t *resident, size_t *written)
{
    enum { MAXP = 4096 };
    unsigned char flags[MAXP];
    size_t n = size / PA_PAGE_SIZE, held = 0, dirty = 0;
    *resident = *written = 0;
    NTSTATUS st = zero_check(p, (uintptr_t)address, size, 1);
    if (st != STATUS_SUCCESS) return st;
    if (n > MAXP || _pa_os_page_flags(address, n, flags)) /* too big to look at, or no pagemap */
        return _pa_os_zero(address, size) ? STATUS_NO_MEMORY : STATUS_SUCCESS;
    /* A page the host holds may still read as zero (cleared here before, and not written
     * since): only the others need clearing. */
    for (size_t i = 0; i < n; i++) {
        if (!flags[i]) continue;
        held++;
        if (page_is_zero((uintptr_t)address + i * PA_PAGE_SIZE)) flags[i] = 0;
        else dirty++;
    }
    *resident = held * PA_PAGE_SIZE;
    *written = dirty * PA_PAGE_SIZE;
    if (*resident > keep_max) return _pa_os_zero(address, size) ? STATUS_NO_MEMORY : STATUS_SUCCESS;
    for (size_t i = 0; i < n;) {
        if (!flags[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && flags[j]) j++;
        memset((char *)address + i * PA_PAGE_SIZE, 0, (j - i) * PA_PAGE_SIZE);
        i = j;
    }
    return STATUS_SUCCESS;
}

int pa_mm_range_pinned(pa_process_t *p, const void *address, size_t size, pa_owner_t owner)
{
    uintptr_t start = (uintptr_t)address, end = start + size;
    int found = 0;
    /* No pin at all (the usual case: asked on every HeapFree and HeapReAlloc from Python):
     * no lock. A pin made meanwhile by another thread is as if made after the call. */
    if (!__atomic_load_n(&p->pins, __ATOMIC_ACQUIRE)) return 0;
    _pa_lock(p);
    for (const pa_pin_t *pin = p->pins; pin && !found; pin = pin->next) {
        if (size) {
            found = pin->start < end && start < pin->end;
        } else {
            const pa_alloc_t *a = _pa_alloc_at_locked(p, pin->start);
            found = a && a->owner == owner;
        }
    }
    _pa_unlock(p);
    return found;
}

void pa_mm_unpin(pa_process_t *p, pa_pin_t *pin)
{
    _pa_lock(p);
    if (pin->prev) pin->prev->next = pin->next;
    else __atomic_store_n(&p->pins, pin->next, __ATOMIC_RELEASE);
    if (pin->next) pin->next->prev = pin->prev;
    p->npins--;
    _pa_pool_put(&p->pin_pool, pin);
    _pa_unlock(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Views of sections                                                                           */

NTSTATUS _pa_mm_map_view(pa_process_t *p, pa_section_t *sec, void **base_io, uint64_t offset,
                         size_t *size_io, DWORD protect)
{
    uintptr_t base = (uintptr_t)*base_io;
    size_t len = _pa_align_up(*size_io, PA_PAGE_SIZE);
    int index, guard;
    NTSTATUS st = check_protect(protect, 1, &index, &guard);
    if (st) return st;
    if (base && (base < p->min || base + len > p->limit || base + len < base))
        return STATUS_INVALID_PARAMETER;
    DWORD alloc_prot = protect | ((sec->attributes & SEC_NOCACHE) ? PAGE_NOCACHE : 0) |
                       ((sec->attributes & SEC_WRITECOMBINE) ? PAGE_WRITECOMBINE : 0);
    int copy = index == 3 || index == 7;
    _pa_lock(p);
    pa_alloc_t *a;
    st = reserve_locked(p, &base, len, MEM_RESERVE, MEM_MAPPED, alloc_prot, PA_OWNER_APP, &a);
    if (st) goto out;
    if (_pa_os_map_fd((void *)base, len, PA_OS_NONE, sec->fd, sec->data_offset + offset, !copy)) {
        release_locked(p, a);
        st = STATUS_NO_MEMORY;
        goto out;
    }
    _pa_section_ref(sec);
    a->section = sec;
    a->offset = offset;
    a->gen = _pa_section_generation(sec);
    pa_pstate_t *s = _pa_pstate(p, base);
    pa_pstate_t bits = (pa_pstate_t)(PS_COMMITTED | (unsigned)index | (guard ? PS_GUARD : 0) |
                                     (copy ? PS_PRIVATE_MAP : 0));
    for (size_t i = 0; i < len >> PA_PAGE_SHIFT; i++)
        s[i] = _pa_section_page_committed(sec, (offset >> PA_PAGE_SHIFT) + i) ? bits : 0;
    if (apply_host_locked(p, base, len >> PA_PAGE_SHIFT)) {
        release_locked(p, a);
        st = STATUS_NO_MEMORY;
        goto out;
    }
    *base_io = (void *)base;
    *size_io = len;
out:
    _pa_unlock(p);
    _pa_trace(p, PA_OP_MAP_VIEW, base, len, protect, offset, st);
    return st;
}

NTSTATUS pa_nt_unmap_view_of_section(pa_process_t *p, void *address)
{
    uintptr_t addr = (uintptr_t)address;
    NTSTATUS st = STATUS_SUCCESS;
    if (addr < p->min || addr >= p->limit) return STATUS_NOT_MAPPED_VIEW;
    _pa_lock(p);
    pa_alloc_t *a = _pa_alloc_at_locked(p, addr);
    uintptr_t vbase = a ? a->base : addr;
    size_t vsize = a ? a->size : 0;
    if (!a || a->type != MEM_MAPPED) /* private memory is freed, not unmapped */
        st = STATUS_NOT_MAPPED_VIEW;
    else if (p->pins && pins_block_locked(p, a->base, a->base + a->size, 1, 0))
        st = PA_STATUS_BUFFER_EXPORTED;
    else
        release_locked(p, a);
    _pa_unlock(p);
    _pa_trace(p, PA_OP_UNMAP_VIEW, vbase, vsize, 0, 0, st);
    return st;
}

NTSTATUS pa_nt_flush_virtual_memory(pa_process_t *p, void *address, size_t size)
{
    uintptr_t addr = (uintptr_t)address;
    NTSTATUS st = STATUS_SUCCESS;
    if (addr < p->min || addr >= p->limit) return STATUS_INVALID_PARAMETER;
    _pa_lock(p);
    pa_alloc_t *a = _pa_alloc_at_locked(p, addr);
    if (!a || a->type != MEM_MAPPED) {
        st = (NTSTATUS)0xC0000088; /* STATUS_NOT_MAPPED_DATA */
        goto out;
    }
    uintptr_t start = _pa_align_down(addr, PA_PAGE_SIZE);
    uintptr_t end = size ? _pa_align_up(addr + size, PA_PAGE_SIZE) : a->base + a->size;
    if (end > a->base + a->size || end < start) {
        st = STATUS_INVALID_PARAMETER;
        goto out;
    }
    if (_pa_os_sync((void *)start, end - start)) st = STATUS_ACCESS_DENIED;
out:
    _pa_unlock(p);
    return st;
}
