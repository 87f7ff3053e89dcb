/* crttest.h: helpers shared by the C tests of layers 4 and 5 (test_crt.c, test_new.c): private
 * processes with a release or debug CRT, a capture of the debug CRT's reports, and a sink that
 * collects dumps. Facts are numbered as in ../shared/reference/heap.md; tests are named after
 * them.
 */
#ifndef CRTTEST_H
#define CRTTEST_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "pyalloc.h"

/* A fresh process (commit_limit 0 = none) whose CRT is debug or not. */
static inline pa_process_t *crt_proc(int debug, size_t commit_limit)
{
    pa_process_options_t o;
    memset(&o, 0, sizeof o);
    o.commit_limit = commit_limit;
    pa_process_t *p = pa_process_create(&o, NULL);
    if (!p) abort();
    CHECK_EQ(pa_crt_set_debug(p, debug), 0);
    CHECK_EQ(pa_crt_is_debug(p), debug);
    return p;
}

/* The process's rundown detaches its CRT, then its heaps. */
static inline void crt_end(pa_process_t *p) { CHECK_EQ(pa_process_destroy(p), STATUS_SUCCESS); }

static inline HANDLE crt_heap(pa_process_t *p) { return pa_heap_get_process_heap(p); }

/* Busy blocks of the process heap (to see that blocks really went back). */
static inline size_t crt_busy(pa_process_t *p)
{
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, crt_heap(p), &s));
    return s.busy_blocks;
}

/* ---- the debug CRT's reports ---- */
typedef struct reports_s {
    int count;
    int kinds[8];       /* by PA_CRT_REPORT_* */
    int types[3];       /* by _CRT_WARN/_ERROR/_ASSERT */
    void *block;        /* of the last report */
    char last[2048];
    char all[32768];
} reports_t;

__attribute__((unused)) static int reports_hook(pa_process_t *p, const pa_crt_report_t *r, void *ctx)
{
    (void)p;
    reports_t *rs = ctx;
    rs->count++;
    if (r->kind >= 0 && r->kind < 8) rs->kinds[r->kind]++;
    if (r->type >= 0 && r->type < 3) rs->types[r->type]++;
    rs->block = r->block;
    snprintf(rs->last, sizeof rs->last, "%s", r->message);
    size_t used = strlen(rs->all);
    snprintf(rs->all + used, sizeof rs->all - used, "%s", r->message);
    return 1;
}

static inline void reports_watch(pa_process_t *p, reports_t *rs)
{
    memset(rs, 0, sizeof *rs);
    pa_crt_set_report_hook(p, reports_hook, rs);
}

static inline void reports_clear(reports_t *rs) { memset(rs, 0, sizeof *rs); }

/* ---- a sink collecting lines ---- */
typedef struct lines_s {
    int n;
    char line[64][256];
} lines_t;

__attribute__((unused)) static void lines_sink(const char *line, void *ctx)
{
    lines_t *l = ctx;
    if (l->n < 64) snprintf(l->line[l->n], sizeof l->line[0], "%s", line);
    l->n++;
}

/* Counts the invalid-parameter handler's calls; remembers the function named. */
typedef struct iph_s {
    int calls;
    char function[64];
} iph_t;

__attribute__((unused)) static void iph_count(pa_process_t *p, const char *function, void *ctx)
{
    (void)p;
    iph_t *i = ctx;
    i->calls++;
    snprintf(i->function, sizeof i->function, "%s", function ? function : "");
}

static inline int all_bytes(const void *a, unsigned char v, size_t n)
{
    const unsigned char *b = a;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v) return 0;
    return 1;
}

#endif
