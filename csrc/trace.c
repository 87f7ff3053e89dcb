#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* trace.c: the event trace of a process, shared by every layer.
 *
 * A ring of fixed-size slots, allocated on the first pa_trace_start and kept until the
 * process dies. Writers are lock-free (one fetch-add, then a release store of the slot's seq),
 * so any layer may record while holding its own locks, and the fault handler may too.
 */
#include <string.h>
#include <time.h>

#include "internal.h"
#include "os/os.h"

typedef struct pa_trace_slot_s {
    _Atomic(uint64_t) seq; /* 0 while being written */
    pa_trace_event_t ev;
} pa_trace_slot_t;

static const char *const op_names[] = {
    [PA_OP_RESERVE] = "reserve", [PA_OP_COMMIT] = "commit", [PA_OP_DECOMMIT] = "decommit",
    [PA_OP_RELEASE] = "release", [PA_OP_PROTECT] = "protect", [PA_OP_RESET] = "reset",
    [PA_OP_MAP_VIEW] = "map_view", [PA_OP_UNMAP_VIEW] = "unmap_view",
    [PA_OP_GUARD_HIT] = "guard_hit", [PA_OP_WATCH_FAULT] = "watch_fault",
    [PA_OP_COPY_ON_WRITE] = "copy_on_write",
    [PA_OP_HEAP_CREATE] = "HeapCreate", [PA_OP_HEAP_DESTROY] = "HeapDestroy",
    [PA_OP_HEAP_ALLOC] = "HeapAlloc", [PA_OP_HEAP_REALLOC] = "HeapReAlloc",
    [PA_OP_HEAP_FREE] = "HeapFree", [PA_OP_HEAP_COMPACT] = "HeapCompact",
    [PA_OP_MALLOC] = "malloc", [PA_OP_CALLOC] = "calloc", [PA_OP_REALLOC] = "realloc",
    [PA_OP_FREE] = "free", [PA_OP_ALIGNED_MALLOC] = "_aligned_malloc",
    [PA_OP_ALIGNED_FREE] = "_aligned_free",
    [PA_OP_NEW] = "operator new", [PA_OP_DELETE] = "operator delete",
    [PA_OP_NEW_ARRAY] = "operator new[]", [PA_OP_DELETE_ARRAY] = "operator delete[]",
};

_Atomic uint64_t _pa_heap_epoch = 1;

const char *pa_trace_op_name(uint32_t op)
{
    return op < sizeof op_names / sizeof *op_names ? op_names[op] : NULL;
}

NTSTATUS pa_trace_start(pa_process_t *p, size_t capacity)
{
    size_t cap = 1;
    if (!capacity) capacity = 65536;
    if (capacity > SIZE_MAX / 2 / sizeof(pa_trace_slot_t)) return STATUS_NO_MEMORY; /* cap would wrap */
    while (cap < capacity) cap <<= 1;
    _pa_lock(p);
    NTSTATUS st = STATUS_SUCCESS;
    if (!p->trace.slots) {
        p->trace.slots = _pa_os_alloc(cap * sizeof(pa_trace_slot_t));
        if (p->trace.slots) p->trace.capacity = cap;
        else st = STATUS_NO_MEMORY;
    }
    if (st == STATUS_SUCCESS) {
        atomic_fetch_add(&p->trace.enabled, 1);
        atomic_fetch_add(&_pa_heap_epoch, 1); /* after enabled: see internal.h */
    }
    _pa_unlock(p);
    return st;
}

void pa_trace_stop(pa_process_t *p)
{
    int n = atomic_load(&p->trace.enabled);
    while (n > 0 && !atomic_compare_exchange_weak(&p->trace.enabled, &n, n - 1)) {
    }
    if (n > 0) atomic_fetch_add(&_pa_heap_epoch, 1);
}

int pa_trace_enabled(const pa_process_t *p)
{
    return atomic_load_explicit(&((pa_process_t *)p)->trace.enabled, memory_order_relaxed) > 0;
}

uint64_t pa_trace_next_seq(const pa_process_t *p)
{
    return atomic_load(&((pa_process_t *)p)->trace.head) + 1;
}

void pa_trace_record(pa_process_t *p, uint32_t layer, uint32_t op, uint64_t address,
                     uint64_t size, uint64_t flags, uint64_t extra, int64_t result)
{
    if (!atomic_load_explicit(&p->trace.enabled, memory_order_relaxed) || !p->trace.slots) return;
    uint64_t idx = atomic_fetch_add_explicit(&p->trace.head, 1, memory_order_relaxed);
    pa_trace_slot_t *s = &p->trace.slots[idx & (p->trace.capacity - 1)];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    s->ev = (pa_trace_event_t){idx + 1, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                               layer, op, address, size, flags, extra, result};
    atomic_store_explicit(&s->seq, idx + 1, memory_order_release);
}

size_t pa_trace_read(pa_process_t *p, uint64_t since, pa_trace_event_t *out, size_t max,
                     uint64_t *next_since, uint64_t *lost)
{
    uint64_t head = atomic_load_explicit(&p->trace.head, memory_order_acquire);
    size_t cap = p->trace.capacity, n = 0;
    *lost = 0;
    if (since == 0) since = 1;
    if (!p->trace.slots) {
        *next_since = since;
        return 0;
    }
    if (head >= cap && since + cap <= head) { /* overwritten already */
        *lost = head - cap + 1 - since;
        since = head - cap + 1;
    }
    uint64_t seq = since;
    for (; seq <= head && n < max; seq++) {
        pa_trace_slot_t *s = &p->trace.slots[(seq - 1) & (cap - 1)];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != seq) {
            /* Not yet published (a writer is still at it): stop here and read it next time. */
            if (seq + cap > atomic_load(&p->trace.head)) break;
            (*lost)++;
            continue;
        }
        pa_trace_event_t ev = s->ev;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) != seq) {
            (*lost)++;
            continue;
        }
        out[n++] = ev;
    }
    *next_since = seq;
    return n;
}

void _pa_trace_free(pa_process_t *p)
{
    if (p->trace.slots) _pa_os_free(p->trace.slots, p->trace.capacity * sizeof(pa_trace_slot_t));
    p->trace.slots = NULL;
}
