/* test_threads.c: layers 1 and 2 under concurrency.
 *
 * The main test runs, on one process: workers doing thousands of random reserve / commit /
 * protect / decommit / reset / release / direct load and store / checked copy / write-watch
 * operations on their own allocations, an intruder trying to change those allocations with
 * another owner (it must never succeed) while doing its own work, and a querier walking and
 * querying the whole address space. Nobody but a worker may change a worker's allocations, so
 * each worker keeps an exact model of them and checks every result against it. At the end the
 * statistics must be back to zero, the walk must show one free region and the guard-page count
 * must equal the guard events the workers saw.
 *
 * Set PA_TEST_SEED to vary the random sequences (default: fixed seeds).
 */
#include "vmtest.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>

#define APP PA_OWNER_APP
#define HEAP PA_OWNER_HEAP
#define RW PAGE_READWRITE
#define RO PAGE_READONLY
#define NA PAGE_NOACCESS
#define ER PAGE_EXECUTE_READ
#define ERW PAGE_EXECUTE_READWRITE

/* Checks made from any thread: counted atomically, reported with the line. */
static atomic_int tfailures;
#define TCHECK(cond)                                                                             \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            atomic_fetch_add(&tfailures, 1);                                                     \
            fprintf(stderr, "  %s:%d: TCHECK(%s) failed\n", __FILE__, __LINE__, #cond);          \
        }                                                                                        \
    } while (0)
#define TCHECK_EQ(a, b)                                                                          \
    do {                                                                                         \
        unsigned long long tc_a = (unsigned long long)(a), tc_b = (unsigned long long)(b);       \
        if (tc_a != tc_b) {                                                                      \
            atomic_fetch_add(&tfailures, 1);                                                     \
            fprintf(stderr, "  %s:%d: %s == %s failed: 0x%llx != 0x%llx\n", __FILE__, __LINE__,  \
                    #a, #b, tc_a, tc_b);                                                         \
        }                                                                                        \
    } while (0)

/* Each test starts with tfailures at 0 and ends by moving them into the harness's count. */
#define TFAILURES_BEGIN() atomic_store(&tfailures, 0)
#define TFAILURES_END() CHECK_EQ(atomic_load(&tfailures), 0)

static uint64_t seed_base(void)
{
    const char *s = getenv("PA_TEST_SEED");
    return s ? strtoull(s, NULL, 0) : 0x9E3779B97F4A7C15ull;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t rnd_below(uint64_t *s, size_t n) { return (size_t)(rnd(s) % n); }

/* ---- guard exceptions, counted per thread ------------------------------------------------- */

static __thread uint64_t tls_guard_exceptions;
static atomic_ullong all_guard_exceptions;

static void count_exception(pa_process_t *p, NTSTATUS code, int write, uintptr_t address)
{
    (void)p, (void)write, (void)address;
    if (code == STATUS_GUARD_PAGE_VIOLATION) tls_guard_exceptions++;
    atomic_fetch_add(&all_guard_exceptions, 1);
}

/* ---- the model of one allocation -------------------------------------------------------- */

#define MAXP 40 /* pages per allocation */
#define MAXA 12 /* allocations per worker */

typedef struct {
    char *base;
    int npages;
    DWORD aprot;
    int watched;
    unsigned char committed[MAXP];
    DWORD prot[MAXP];              /* valid when committed; may include PAGE_GUARD */
    unsigned char value[MAXP];     /* the byte at offset 0 of the page */
    unsigned char unknown[MAXP];   /* after MEM_RESET: old value or zero */
    unsigned char dirty[MAXP];     /* written since the last watch reset: must be reported */
    unsigned char maybe[MAXP];     /* decommitted since: may be reported (fact 83) */
} model_t;

static int readable(DWORD prot) { return (prot & 0xFF) != NA; }
static int writable(DWORD prot) { return (prot & 0xFF) == RW || (prot & 0xFF) == ERW; }

static DWORD random_prot(uint64_t *s, int allow_guard)
{
    /* PAGE_EXECUTE is left out: whether it reads is not pinned by the reference. */
    static const DWORD bases[] = {NA, RO, RW, ER, ERW, RW};
    DWORD prot = bases[rnd_below(s, 6)];
    if (allow_guard && prot != NA && rnd_below(s, 5) == 0) prot |= PAGE_GUARD;
    return prot;
}

/* What a checked copy of [off, off + len) must return, in address order; applies the guard
 * clearing to the model as the memory manager does. */
static NTSTATUS model_access(model_t *m, size_t off, size_t len, int write, uintptr_t *fault)
{
    uintptr_t start = (uintptr_t)m->base + off;
    for (size_t pg = off / PAGE; pg <= (off + len - 1) / PAGE; pg++) {
        uintptr_t at = (uintptr_t)m->base + pg * PAGE;
        if (at < start) at = start;
        *fault = at;
        if (!m->committed[pg]) return STATUS_ACCESS_VIOLATION;
        if (m->prot[pg] & PAGE_GUARD) {
            m->prot[pg] &= ~(DWORD)PAGE_GUARD;
            return STATUS_GUARD_PAGE_VIOLATION;
        }
        if (write ? !writable(m->prot[pg]) : !readable(m->prot[pg])) return STATUS_ACCESS_VIOLATION;
    }
    return STATUS_SUCCESS;
}

static int same_region(const model_t *m, int i, int j)
{
    if (m->committed[i] != m->committed[j]) return 0;
    return !m->committed[i] || m->prot[i] == m->prot[j];
}

/* VirtualQuery over the whole allocation must match the model region by region. */
static void check_query(pa_process_t *p, const model_t *m)
{
    int pg = 0;
    while (pg < m->npages) {
        int run = 1;
        while (pg + run < m->npages && same_region(m, pg, pg + run)) run++;
        MEMORY_BASIC_INFORMATION q;
        TCHECK_EQ(pa_virtual_query(p, m->base + pg * PAGE, &q, sizeof q), sizeof q);
        TCHECK_EQ(q.BaseAddress, m->base + pg * PAGE);
        TCHECK_EQ(q.AllocationBase, m->base);
        TCHECK_EQ(q.AllocationProtect, m->aprot);
        TCHECK_EQ(q.RegionSize, (size_t)run * PAGE);
        TCHECK_EQ(q.State, m->committed[pg] ? MEM_COMMIT : MEM_RESERVE);
        TCHECK_EQ(q.Protect, m->committed[pg] ? m->prot[pg] : 0);
        TCHECK_EQ(q.Type, MEM_PRIVATE);
        pg += run;
    }
}

static void check_write_watch(pa_process_t *p, model_t *m, int reset)
{
    void *addr[MAXP];
    ULONG_PTR count = MAXP;
    ULONG gran = 0;
    unsigned char reported[MAXP] = {0};
    TCHECK_EQ(pa_get_write_watch(p, reset ? WRITE_WATCH_FLAG_RESET : 0, m->base,
                                 (size_t)m->npages * PAGE, addr, &count, &gran),
              0);
    TCHECK_EQ(gran, PAGE);
    for (ULONG_PTR i = 0; i < count && i < MAXP; i++) {
        size_t pg = ((char *)addr[i] - m->base) / PAGE;
        TCHECK(pg < (size_t)m->npages);
        if (pg < (size_t)m->npages) reported[pg] = 1;
    }
    for (int pg = 0; pg < m->npages; pg++) {
        if (m->dirty[pg]) TCHECK(reported[pg]);
        if (reported[pg]) TCHECK(m->dirty[pg] || m->maybe[pg]);
        if (reset) m->dirty[pg] = m->maybe[pg] = 0;
    }
}

/* ---- workers -------------------------------------------------------------------------------- */

typedef struct {
    pa_process_t *p;
    uint64_t rng;
    int ops;
    model_t a[MAXA];
    int n;
    uint64_t guard_events; /* exceptions seen + STATUS_GUARD_PAGE_VIOLATION results */
    long counts[12];       /* operations done, by kind, to show the mix was exercised */
} worker_t;

static void random_range(worker_t *w, const model_t *m, int *first, int *count)
{
    *first = (int)rnd_below(&w->rng, (size_t)m->npages);
    *count = 1 + (int)rnd_below(&w->rng, (size_t)(m->npages - *first));
}

static void op_reserve(worker_t *w)
{
    if (w->n == MAXA) return;
    model_t *m = &w->a[w->n];
    memset(m, 0, sizeof *m);
    m->npages = 1 + (int)rnd_below(&w->rng, MAXP);
    DWORD type = MEM_RESERVE;
    int commit = rnd_below(&w->rng, 2) == 0;
    if (commit) type |= MEM_COMMIT;
    if (rnd_below(&w->rng, 5) == 0) type |= MEM_TOP_DOWN;
    if (rnd_below(&w->rng, 4) == 0) type |= MEM_WRITE_WATCH, m->watched = 1;
    m->aprot = random_prot(&w->rng, 1);
    m->base = pa_virtual_alloc(w->p, NULL, (size_t)m->npages * PAGE - rnd_below(&w->rng, PAGE),
                               type, m->aprot, APP);
    TCHECK(m->base != NULL);
    if (!m->base) return;
    TCHECK_EQ((uintptr_t)m->base & (SLOT - 1), 0);
    for (int pg = 0; pg < m->npages; pg++) {
        m->committed[pg] = (unsigned char)commit;
        m->prot[pg] = m->aprot;
    }
    w->n++;
    check_query(w->p, m);
}

static void op_release(worker_t *w, int i)
{
    TCHECK(pa_virtual_free(w->p, w->a[i].base, 0, MEM_RELEASE, APP));
    w->a[i] = w->a[--w->n];
}

static void op_commit(worker_t *w, model_t *m)
{
    int first, count;
    random_range(w, m, &first, &count);
    DWORD prot = random_prot(&w->rng, 1);
    char *r = pa_virtual_alloc(w->p, m->base + first * PAGE, (size_t)count * PAGE, MEM_COMMIT,
                               prot, APP);
    TCHECK_EQ(r, m->base + first * PAGE);
    for (int pg = first; pg < first + count; pg++) {
        if (!m->committed[pg]) m->value[pg] = 0, m->unknown[pg] = 0; /* fresh pages are zero */
        m->committed[pg] = 1;
        m->prot[pg] = prot;
    }
}

static void op_decommit(worker_t *w, model_t *m)
{
    int first, count;
    random_range(w, m, &first, &count);
    int whole = rnd_below(&w->rng, 8) == 0;
    if (whole) first = 0, count = m->npages;
    TCHECK(pa_virtual_free(w->p, m->base + first * PAGE, whole ? 0 : (size_t)count * PAGE,
                           MEM_DECOMMIT, APP));
    for (int pg = first; pg < first + count; pg++) {
        m->committed[pg] = 0;
        if (m->watched) m->maybe[pg] |= m->dirty[pg], m->dirty[pg] = 0;
    }
}

static void op_protect(worker_t *w, model_t *m)
{
    int first, count;
    random_range(w, m, &first, &count);
    DWORD prot = random_prot(&w->rng, 1), old = 0x77;
    int all = 1;
    for (int pg = first; pg < first + count; pg++) all &= m->committed[pg];
    pa_set_last_error(0);
    BOOL ok = pa_virtual_protect(w->p, m->base + first * PAGE, (size_t)count * PAGE, prot, &old,
                                 APP);
    TCHECK_EQ(ok, all);
    if (!ok) {
        TCHECK_EQ(pa_get_last_error(), ERROR_INVALID_ADDRESS);
        return;
    }
    TCHECK_EQ(old, m->prot[first]);
    for (int pg = first; pg < first + count; pg++) m->prot[pg] = prot;
}

static void op_reset(worker_t *w, model_t *m)
{
    int first, count;
    random_range(w, m, &first, &count);
    TCHECK_EQ(pa_virtual_alloc(w->p, m->base + first * PAGE, (size_t)count * PAGE, MEM_RESET, NA,
                               APP),
              m->base + first * PAGE);
    for (int pg = first; pg < first + count; pg++)
        if (m->committed[pg]) m->unknown[pg] = 1;
}

/* A direct load or store at offset 0 of a page, through the host's MMU. */
static void op_touch(worker_t *w, model_t *m)
{
    int pg = (int)rnd_below(&w->rng, (size_t)m->npages);
    if (!m->committed[pg] || !readable(m->prot[pg])) return; /* would be an access violation */
    int guard = (m->prot[pg] & PAGE_GUARD) != 0;
    uint64_t before = tls_guard_exceptions;
    char *at = m->base + pg * PAGE;
    if (writable(m->prot[pg]) && rnd_below(&w->rng, 2)) {
        unsigned char v = (unsigned char)(1 + rnd_below(&w->rng, 255));
        vm_store(at, v);
        m->value[pg] = v;
        m->unknown[pg] = 0;
        if (m->watched) m->dirty[pg] = 1;
    } else {
        unsigned char v = vm_load(at);
        if (!m->unknown[pg]) TCHECK_EQ(v, m->value[pg]);
        else TCHECK(v == m->value[pg] || v == 0);
    }
    TCHECK_EQ(tls_guard_exceptions - before, (uint64_t)guard);
    w->guard_events += (uint64_t)guard;
    m->prot[pg] &= ~(DWORD)PAGE_GUARD;
}

/* pa_mm_read / pa_mm_write of a random range inside the allocation. */
static void op_copy(worker_t *w, model_t *m)
{
    static __thread unsigned char buf[3 * PAGE];
    size_t total = (size_t)m->npages * PAGE;
    size_t off = rnd_below(&w->rng, total);
    size_t len = 1 + rnd_below(&w->rng, total - off < sizeof buf ? total - off : sizeof buf);
    int write = rnd_below(&w->rng, 2) == 0;
    uintptr_t want_fault = 0, fault = 0;
    NTSTATUS want = model_access(m, off, len, write, &want_fault);
    unsigned char v = (unsigned char)(1 + rnd_below(&w->rng, 255));
    NTSTATUS st;
    if (write) {
        memset(buf, v, len);
        st = pa_mm_write(w->p, m->base + off, buf, len, &fault);
    } else {
        memset(buf, 0xEE, len);
        st = pa_mm_read(w->p, m->base + off, buf, len, &fault);
    }
    TCHECK_EQ(st, want);
    if (st != STATUS_SUCCESS) TCHECK_EQ(fault, want_fault);
    if (want == STATUS_GUARD_PAGE_VIOLATION) w->guard_events++;
    if (st != STATUS_SUCCESS || want != STATUS_SUCCESS) {
        if (!write && st != STATUS_SUCCESS) TCHECK_EQ(buf[0], 0xEE); /* nothing copied */
        return;
    }
    for (size_t pg = off / PAGE; pg <= (off + len - 1) / PAGE; pg++) {
        size_t page_off = pg * PAGE;
        if (write) {
            if (m->watched) m->dirty[pg] = 1;
            if (page_off >= off) m->value[pg] = v, m->unknown[pg] = 0;
        } else if (page_off >= off) {
            unsigned char got = buf[page_off - off];
            if (!m->unknown[pg]) TCHECK_EQ(got, m->value[pg]);
            else TCHECK(got == m->value[pg] || got == 0);
        }
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < w->ops; i++) {
        int kind = (int)rnd_below(&w->rng, 100);
        if (w->n == 0 || kind < 12) {
            op_reserve(w);
            w->counts[0]++;
            continue;
        }
        int ai = (int)rnd_below(&w->rng, (size_t)w->n);
        model_t *m = &w->a[ai];
        if (kind < 20) op_release(w, ai), w->counts[1]++;
        else if (kind < 34) op_commit(w, m), w->counts[2]++;
        else if (kind < 42) op_decommit(w, m), w->counts[3]++;
        else if (kind < 54) op_protect(w, m), w->counts[4]++;
        else if (kind < 57) op_reset(w, m), w->counts[5]++;
        else if (kind < 75) op_touch(w, m), w->counts[6]++;
        else if (kind < 88) op_copy(w, m), w->counts[7]++;
        else if (kind < 95) check_query(w->p, m), w->counts[8]++;
        else if (m->watched) check_write_watch(w->p, m, rnd_below(&w->rng, 2) == 0), w->counts[9]++;
    }
    for (int i = 0; i < w->n; i++) check_query(w->p, &w->a[i]);
    while (w->n) op_release(w, w->n - 1);
    return NULL;
}

/* ---- the intruder: another owner, which may change nothing of the workers' ----------------- */

typedef struct {
    pa_process_t *p;
    uint64_t rng;
    atomic_int *stop;
    long attempts, own_cycles;
} intruder_t;

static int gle_in(DWORD gle, DWORD a, DWORD b, DWORD c)
{
    return gle == a || gle == b || gle == c;
}

static void *intruder_main(void *arg)
{
    intruder_t *t = arg;
    uintptr_t lo = pa_process_min_address(t->p), hi = pa_process_max_address(t->p) + 1;
    while (!atomic_load(t->stop)) {
        /* Workers allocate bottom-up from lo, and top-down below hi. */
        uintptr_t addr = rnd_below(&t->rng, 2) ? lo + rnd_below(&t->rng, 16 * MiB)
                                              : hi - 1 - rnd_below(&t->rng, 4 * MiB);
        size_t size = 1 + rnd_below(&t->rng, 4 * PAGE);
        DWORD old, gle;
        int kind = (int)rnd_below(&t->rng, 6);
        pa_set_last_error(0);
        switch (kind) {
        case 0:
            TCHECK(!pa_virtual_protect(t->p, (void *)addr, size, RO, &old, HEAP));
            gle = pa_get_last_error();
            TCHECK(gle_in(gle, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, ERROR_INVALID_ADDRESS));
            break;
        case 1:
            TCHECK(!pa_virtual_free(t->p, (void *)addr, size, MEM_DECOMMIT, HEAP));
            gle = pa_get_last_error();
            TCHECK(gle_in(gle, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, ERROR_INVALID_ADDRESS));
            break;
        case 2:
            TCHECK(!pa_virtual_free(t->p, (void *)(addr & ~(SLOT - 1)), 0, MEM_RELEASE, HEAP));
            gle = pa_get_last_error();
            TCHECK(gle_in(gle, ERROR_ACCESS_DENIED, ERROR_INVALID_ADDRESS, ERROR_INVALID_ADDRESS));
            break;
        case 3:
            TCHECK(!pa_virtual_alloc(t->p, (void *)addr, size, MEM_COMMIT, NA, HEAP));
            gle = pa_get_last_error();
            if (addr + size > hi) TCHECK_EQ(gle, ERROR_INVALID_PARAMETER); /* fact 12 */
            else TCHECK(gle_in(gle, ERROR_ACCESS_DENIED, ERROR_INVALID_ADDRESS, ERROR_INVALID_ADDRESS));
            break;
        case 4:
            TCHECK(!pa_virtual_alloc(t->p, (void *)addr, size, MEM_RESET, NA, HEAP));
            gle = pa_get_last_error();
            if (addr + size > hi) TCHECK_EQ(gle, ERROR_INVALID_PARAMETER); /* fact 12 */
            else TCHECK(gle_in(gle, ERROR_ACCESS_DENIED, ERROR_INVALID_ADDRESS, ERROR_INVALID_ADDRESS));
            break;
        default: {
            /* Its own memory works normally, pins included. */
            DWORD type = MEM_RESERVE | MEM_COMMIT | (rnd_below(&t->rng, 2) ? MEM_TOP_DOWN : 0);
            char *r = pa_virtual_alloc(t->p, NULL, 3 * PAGE, type, RW, HEAP);
            TCHECK(r != NULL);
            if (!r) break;
            pa_pin_t *pin = NULL;
            int wr = 0;
            uintptr_t fault;
            TCHECK_EQ(pa_mm_pin(t->p, r + PAGE, PAGE, 1, &wr, &fault, &pin), STATUS_SUCCESS);
            TCHECK_EQ(wr, 1);
            TCHECK(!pa_virtual_free(t->p, r, 0, MEM_RELEASE, HEAP));
            TCHECK_EQ(pa_get_last_error(), PA_ERROR_BUFFER_EXPORTED);
            TCHECK_EQ(pa_mm_write(t->p, r + PAGE, "abc", 3, &fault), STATUS_SUCCESS);
            if (pin) pa_mm_unpin(t->p, pin);
            TCHECK(pa_virtual_free(t->p, r, 0, MEM_RELEASE, HEAP));
            t->own_cycles++;
            break;
        }
        }
        t->attempts++;
    }
    return NULL;
}

/* ---- the querier: walks and queries while everything changes ------------------------------ */

typedef struct {
    pa_process_t *p;
    uint64_t rng;
    atomic_int *stop;
    long walks, queries;
} querier_t;

typedef struct {
    uintptr_t next;
    int ok;
} walk_check_t;

static int check_region(const pa_region_info_t *r, void *arg)
{
    walk_check_t *c = arg;
    const MEMORY_BASIC_INFORMATION *m = &r->mbi;
    uintptr_t base = (uintptr_t)m->BaseAddress;
    int ok = base == c->next && m->RegionSize > 0 && (m->RegionSize & (PAGE - 1)) == 0;
    if (m->State == MEM_FREE) {
        ok &= m->AllocationBase == NULL && m->Protect == NA && m->Type == 0;
        if (r->unusable) ok &= ((base + m->RegionSize) & (SLOT - 1)) == 0 && (base & (SLOT - 1));
        else ok &= (base & (SLOT - 1)) == 0;
    } else {
        uintptr_t ab = (uintptr_t)m->AllocationBase;
        ok &= (m->State == MEM_RESERVE || m->State == MEM_COMMIT) && !r->unusable;
        ok &= ab && (ab & (SLOT - 1)) == 0 && ab <= base && m->Type == MEM_PRIVATE;
        ok &= (m->State == MEM_RESERVE) == (m->Protect == 0);
        ok &= r->owner == APP || r->owner == HEAP;
    }
    if (!ok) {
        fprintf(stderr, "  bad region %p size 0x%zx state 0x%x prot 0x%x unusable %d\n",
                m->BaseAddress, (size_t)m->RegionSize, (unsigned)m->State, (unsigned)m->Protect,
                r->unusable);
        c->ok = 0;
        return 1;
    }
    c->next = base + m->RegionSize;
    return 0;
}

static void *querier_main(void *arg)
{
    querier_t *q = arg;
    uintptr_t lo = pa_process_min_address(q->p), hi = pa_process_max_address(q->p) + 1;
    while (!atomic_load(q->stop)) {
        walk_check_t c = {lo, 1};
        TCHECK_EQ(pa_process_walk(q->p, check_region, &c), 0);
        TCHECK(c.ok);
        TCHECK_EQ(c.next, hi);
        q->walks++;
        for (int i = 0; i < 64; i++) {
            uintptr_t a = rnd_below(&q->rng, 2) ? lo + rnd_below(&q->rng, 16 * MiB)
                                                : hi - 1 - rnd_below(&q->rng, 4 * MiB);
            MEMORY_BASIC_INFORMATION m;
            TCHECK_EQ(pa_virtual_query(q->p, (void *)a, &m, sizeof m), sizeof m);
            TCHECK_EQ((uintptr_t)m.BaseAddress, a & ~(PAGE - 1));
            TCHECK((uintptr_t)m.BaseAddress + m.RegionSize <= hi);
            TCHECK(m.State == MEM_FREE || m.State == MEM_RESERVE || m.State == MEM_COMMIT);
            q->queries++;
        }
        pa_vm_stats_t s;
        pa_process_stats(q->p, &s);
        TCHECK(s.committed <= s.peak_committed);
        TCHECK(s.committed <= s.reserved);
    }
    return NULL;
}

/* ---- the tests ------------------------------------------------------------------------------ */

static int stats_zero_and_walk_free(pa_process_t *p)
{
    pa_vm_stats_t s;
    pa_process_stats(p, &s);
    walk_check_t c = {pa_process_min_address(p), 1};
    int regions = pa_process_walk(p, check_region, &c);
    return s.reserved == 0 && s.committed == 0 && s.allocations == 0 && s.pins == 0 &&
           regions == 0 && c.ok && c.next == pa_process_max_address(p) + 1;
}

TEST(threads_random_operations_on_one_process_keep_every_invariant)
{
    enum { WORKERS = 3, OPS = 30000 };
    TFAILURES_BEGIN();
    pa_process_t *p = vm_new(256 * MiB, 0);
    pa_set_exception_handler(count_exception);
    uint64_t seed = seed_base();
    static worker_t w[WORKERS];
    atomic_int stop = 0;
    intruder_t t = {p, seed ^ 0x1111, &stop, 0, 0};
    querier_t q = {p, seed ^ 0x2222, &stop, 0, 0};
    pthread_t tw[WORKERS], tt, tq;
    for (int i = 0; i < WORKERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].p = p;
        w[i].rng = seed + 0x1000 * (uint64_t)(i + 1);
        w[i].ops = OPS;
        CHECK_EQ(pthread_create(&tw[i], NULL, worker_main, &w[i]), 0);
    }
    CHECK_EQ(pthread_create(&tt, NULL, intruder_main, &t), 0);
    CHECK_EQ(pthread_create(&tq, NULL, querier_main, &q), 0);
    for (int i = 0; i < WORKERS; i++) pthread_join(tw[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(tt, NULL);
    pthread_join(tq, NULL);
    pa_set_exception_handler(NULL);

    uint64_t guard_events = 0;
    for (int i = 0; i < WORKERS; i++) {
        guard_events += w[i].guard_events;
        for (int k = 0; k < 10; k++) CHECK(w[i].counts[k] > 0); /* every kind ran */
    }
    CHECK(guard_events > 0);
    CHECK(t.attempts > 100);
    CHECK(t.own_cycles > 0);
    CHECK(q.walks > 0);
    pa_vm_stats_t s = vm_stats(p);
    CHECK_EQ(s.guard_hits, guard_events);
    CHECK(s.peak_committed > 0);
    CHECK(s.watch_faults > 0);
    CHECK(stats_zero_and_walk_free(p));
    TFAILURES_END();
    VM_END(p);
}

/* All threads load every page of one guarded allocation: each guard raises exactly once. */
typedef struct {
    pa_process_t *p;
    char *base;
    int npages, start, write;
} sweep_t;

static void *sweep_main(void *arg)
{
    sweep_t *s = arg;
    for (int i = 0; i < s->npages; i++) {
        char *at = s->base + ((s->start + i) % s->npages) * PAGE + 8;
        if (s->write) vm_store(at, 1);
        else (void)vm_load(at);
    }
    return NULL;
}

static void sweep(pa_process_t *p, char *base, int npages, int write, int nthreads)
{
    pthread_t th[4];
    sweep_t s[4];
    for (int i = 0; i < nthreads; i++) {
        s[i] = (sweep_t){p, base, npages, i * npages / nthreads, write};
        CHECK_EQ(pthread_create(&th[i], NULL, sweep_main, &s[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
}

TEST(threads_racing_on_shared_guard_pages_raise_each_exactly_once)
{
    /* Fact 71 under concurrency: one exception per guard page, whichever thread meets it. */
    enum { N = 256 };
    TFAILURES_BEGIN();
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, N * PAGE, MEM_RESERVE | MEM_COMMIT, RW | PAGE_GUARD);
    atomic_store(&all_guard_exceptions, 0);
    pa_set_exception_handler(count_exception);
    sweep(p, a, N, 0, 4);
    CHECK_EQ(atomic_load(&all_guard_exceptions), N);
    CHECK_EQ(vm_stats(p).guard_hits, N);
    CHECK_REGION(p, a, a, RW | PAGE_GUARD, N * PAGE, MEM_COMMIT, RW);
    /* Again with stores. */
    DWORD old;
    CHECK(pa_virtual_protect(p, a, N * PAGE, RW | PAGE_GUARD, &old, APP));
    sweep(p, a, N, 1, 4);
    CHECK_EQ(atomic_load(&all_guard_exceptions), 2 * N);
    CHECK_EQ(vm_stats(p).guard_hits, 2 * N);
    CHECK_EQ(a[8], 1);
    CHECK_EQ(a[(N - 1) * PAGE + 8], 1);
    pa_set_exception_handler(NULL);
    vm_release(p, a);
    TFAILURES_END();
    VM_END(p);
}

TEST(threads_racing_on_shared_watched_pages_record_each_exactly_once)
{
    enum { N = 256 };
    pa_process_t *p = vm_new(0, 0);
    char *a = vm_alloc(p, N * PAGE, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, RW);
    sweep(p, a, N, 1, 4);
    CHECK_EQ(vm_stats(p).watch_faults, N);
    static void *addr[N];
    ULONG_PTR count = N;
    ULONG gran;
    CHECK_EQ(pa_get_write_watch(p, WRITE_WATCH_FLAG_RESET, a, N * PAGE, addr, &count, &gran), 0);
    CHECK_EQ(count, N);
    for (int i = 0; i < N && i < (int)count; i++) CHECK_EQ(addr[i], a + i * PAGE);
    sweep(p, a, N, 1, 4);
    CHECK_EQ(vm_stats(p).watch_faults, 2 * N);
    vm_release(p, a);
    VM_END(p);
}

/* Threads creating, using and destroying their own processes while the others fault in theirs:
 * the registry the fault handler reads is shared. */
static void *own_process_main(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    for (int round = 0; round < 20; round++) {
        pa_process_options_t o = {4 * MiB, 64 * PAGE};
        NTSTATUS st;
        pa_process_t *p = pa_process_create(&o, &st);
        TCHECK(p != NULL);
        if (!p) return NULL;
        char *g = pa_virtual_alloc(p, NULL, 8 * PAGE, MEM_RESERVE | MEM_COMMIT, RW | PAGE_GUARD,
                                   APP);
        TCHECK(g != NULL);
        uint64_t before = tls_guard_exceptions;
        for (int i = 0; i < 8; i++) vm_store(g + i * PAGE + (int)rnd_below(&rng, PAGE), 1);
        TCHECK_EQ(tls_guard_exceptions - before, 8);
        int n = 0;
        char *r[40];
        while (n < 40) {
            r[n] = pa_virtual_alloc(p, NULL, PAGE, MEM_COMMIT, RW, APP);
            if (!r[n]) break;
            n++;
        }
        /* 4 MiB = 64 slots, 62 usable, one taken; the commit limit stops us first. */
        TCHECK_EQ(n, 40);
        TCHECK(pa_virtual_alloc(p, NULL, 64 * PAGE, MEM_COMMIT, RW, APP) == NULL);
        TCHECK_EQ(pa_get_last_error(), ERROR_COMMITMENT_LIMIT);
        for (int i = 0; i < n; i++) TCHECK(pa_virtual_free(p, r[i], 0, MEM_RELEASE, APP));
        TCHECK(pa_virtual_free(p, g, 0, MEM_RELEASE, APP));
        TCHECK(stats_zero_and_walk_free(p));
        TCHECK_EQ(pa_process_destroy(p), STATUS_SUCCESS);
    }
    return NULL;
}

TEST(threads_with_their_own_processes_run_independently)
{
    TFAILURES_BEGIN();
    pa_set_exception_handler(count_exception);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, own_process_main, (void *)(uintptr_t)(i + 7)), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pa_set_exception_handler(NULL);
    TFAILURES_END();
}

CTEST_MAIN()
