/* alloc_workloads.c: allocation-heavy programs for bench_preload.py.
 *
 * Plain C against the C library's malloc family, so that LD_PRELOAD decides which allocator
 * serves them (glibc, mimalloc, jemalloc or pyalloc's preload library). Each workload prints a
 * checksum of the data it wrote and read back (never of addresses), so every allocator must
 * print the same line; a wrong block (overlap, lost bytes) changes the sum.
 *
 *   alloc_workloads WORKLOAD [SCALE]      WORKLOAD: churn mixed prodcons pool realloc trees
 *
 * SCALE (default 1.0) multiplies the number of operations. Sizes and lifetimes come from a
 * fixed-seed generator, so the sequence of calls is the same under every allocator.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static inline uint64_t rnd(void) /* xorshift64* */
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "malloc(%zu) failed\n", n);
        exit(2);
    }
    return p;
}

/* Writes the first and last 16 bytes and one byte in every 4 KiB of a block, as a program
 * filling a buffer would touch its pages; returns nothing, the bytes are checked on free. */
static inline void touch(unsigned char *p, size_t n, unsigned char v)
{
    memset(p, v, n < 16 ? n : 16);
    if (n > 16) {
        size_t tail = n - 16 < 16 ? n - 16 : 16;
        memset(p + n - tail, v, tail);
    }
    for (size_t off = 4096; off < n; off += 4096) p[off] = v;
}

static inline uint64_t check(const unsigned char *p, size_t n)
{
    /* (n / 2) rounded down to 4 KiB is 0 or a page touch() wrote */
    return n + p[0] + 3u * p[n - 1] + 7u * p[(n / 2) & ~(size_t)4095];
}

/* A table of live blocks, replaced at random by churn, mixed and pool: replace() checks and
 * frees block k (if any), then puts a new one of n bytes written with v there; free_all()
 * checks and frees them all. Both return the freed blocks' checksums. */
static inline uint64_t replace(unsigned char **blk, size_t *len, size_t k, size_t n,
                               unsigned char v)
{
    uint64_t sum = 0;
    if (blk[k]) {
        sum = check(blk[k], len[k]);
        free(blk[k]);
    }
    blk[k] = xmalloc(n);
    len[k] = n;
    touch(blk[k], n, v);
    return sum;
}

static uint64_t free_all(unsigned char **blk, const size_t *len, size_t count)
{
    uint64_t sum = 0;
    for (size_t k = 0; k < count; k++)
        if (blk[k]) {
            sum += check(blk[k], len[k]);
            free(blk[k]);
        }
    return sum;
}

/* ---- churn: 16-512 B blocks with random lifetimes (32k slots, random replacement) ---- */

static uint64_t churn(double scale)
{
    enum { SLOTS = 1 << 15 };
    unsigned char **slot = calloc(SLOTS, sizeof *slot);
    size_t *len = calloc(SLOTS, sizeof *len);
    long steps = (long)(3e6 * scale);
    uint64_t sum = 0;
    for (long i = 0; i < steps; i++) {
        uint64_t r = rnd();
        /* Most slots are short-lived: a skewed index makes the low slots churn fastest. */
        size_t k = (size_t)(r % SLOTS);
        if (r >> 63) k &= 1023;
        sum += replace(slot, len, k, 16 + (size_t)((r >> 20) % 497), (unsigned char)(i & 0xff));
    }
    sum += free_all(slot, len, SLOTS);
    free(slot);
    free(len);
    return sum;
}

/* ---- mixed: 8 B - 64 KiB, log-uniform sizes (most blocks small), 4000 live ---- */

static uint64_t mixed(double scale)
{
    enum { SLOTS = 4000 };
    unsigned char **slot = calloc(SLOTS, sizeof *slot);
    size_t *len = calloc(SLOTS, sizeof *len);
    long steps = (long)(1e6 * scale);
    uint64_t sum = 0;
    for (long i = 0; i < steps; i++) {
        uint64_t r = rnd();
        size_t k = (size_t)(r % SLOTS);
        unsigned bits = 3 + (unsigned)((r >> 24) % 14);        /* 2^3 .. 2^16 */
        size_t n = ((size_t)1 << bits) + (size_t)((r >> 32) % ((size_t)1 << bits));
        if (n > 65536) n = 65536;
        sum += replace(slot, len, k, n, (unsigned char)(i & 0xff));
    }
    sum += free_all(slot, len, SLOTS);
    free(slot);
    free(len);
    return sum;
}

/* ---- prodcons: one thread allocates 16-1024 B messages, the other reads and frees them ----
 * Messages travel in batches of 256 through a bounded queue (mutex + condition variables),
 * so the cost is the allocator's cross-thread free rather than the scheduler's ping-pong. */

enum { BATCH = 256, QUEUE = 32 };
static unsigned char *queue[QUEUE][BATCH];
static int q_head, q_count;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_nonempty = PTHREAD_COND_INITIALIZER, q_nonfull = PTHREAD_COND_INITIALIZER;
static long prod_batches;

static void *producer(void *arg)
{
    (void)arg;
    uint64_t state = 0xC0FFEEull;
    unsigned char *batch[BATCH];
    for (long b = 0; b < prod_batches; b++) {
        for (int i = 0; i < BATCH; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t n = 16 + (size_t)((state >> 33) % 1009);
            unsigned char *p = xmalloc(n);
            memcpy(p, &n, sizeof n);
            memset(p + sizeof n, (int)((b + i) & 0xff), n - sizeof n);
            batch[i] = p;
        }
        pthread_mutex_lock(&q_lock);
        while (q_count == QUEUE) pthread_cond_wait(&q_nonfull, &q_lock);
        memcpy(queue[(q_head + q_count) % QUEUE], batch, sizeof batch);
        q_count++;
        pthread_cond_signal(&q_nonempty);
        pthread_mutex_unlock(&q_lock);
    }
    return NULL;
}

static uint64_t prodcons(double scale)
{
    prod_batches = (long)(8000 * scale);
    pthread_t t;
    pthread_create(&t, NULL, producer, NULL);
    uint64_t sum = 0;
    unsigned char *batch[BATCH];
    for (long b = 0; b < prod_batches; b++) {
        pthread_mutex_lock(&q_lock);
        while (q_count == 0) pthread_cond_wait(&q_nonempty, &q_lock);
        memcpy(batch, queue[q_head], sizeof batch);
        q_head = (q_head + 1) % QUEUE;
        q_count--;
        pthread_cond_signal(&q_nonfull);
        pthread_mutex_unlock(&q_lock);
        for (int i = 0; i < BATCH; i++) {
            size_t n;
            memcpy(&n, batch[i], sizeof n);
            sum += n + batch[i][n - 1] + batch[i][n / 2];
            free(batch[i]);
        }
    }
    pthread_join(t, NULL);
    return sum;
}

/* ---- pool: 32 threads at once (twice as many as a pyalloc heap has thread caches, and more
 * than glibc's 16 arenas on two cores), each replacing blocks of 16-1024 B among 64 of its
 * own, as the workers of a thread pool would; each thread has its own generator, and the
 * checksum is the sum of theirs ---- */

enum { POOL_THREADS = 32, POOL_LIVE = 64 };
static long pool_steps;

static void *pool_worker(void *arg)
{
    uint64_t state = 0x5DEECE66Dull * ((uint64_t)(uintptr_t)arg + 1);
    unsigned char *live[POOL_LIVE] = {0};
    size_t len[POOL_LIVE] = {0};
    uint64_t sum = 0;
    for (long i = 0; i < pool_steps; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = (size_t)(state >> 40) % POOL_LIVE;
        size_t n = 16 + (size_t)((state >> 20) % 1009);
        sum += replace(live, len, k, n, (unsigned char)(i & 0xff));
    }
    sum += free_all(live, len, POOL_LIVE);
    return (void *)(uintptr_t)sum;
}

static uint64_t pool(double scale)
{
    pool_steps = (long)(500000 * scale);
    pthread_t t[POOL_THREADS];
    for (uintptr_t i = 0; i < POOL_THREADS; i++)
        pthread_create(&t[i], NULL, pool_worker, (void *)i);
    uint64_t sum = 0;
    for (int i = 0; i < POOL_THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (uint64_t)(uintptr_t)r;
    }
    return sum;
}

/* ---- realloc: string/vector builders growing by appends, 256 live, up to 512 KiB ---- */

static uint64_t realloc_growth(double scale)
{
    enum { LIVE = 256 };
    struct vec { unsigned char *p; size_t len, cap, target; int doubling; } v[LIVE];
    memset(v, 0, sizeof v);
    long appends = (long)(1.5e6 * scale);
    uint64_t sum = 0;
    for (long i = 0; i < appends; i++) {
        uint64_t r = rnd();
        struct vec *b = &v[r % LIVE];
        if (!b->p || b->len >= b->target) {
            if (b->p) {
                sum += b->len + b->p[0] + b->p[b->len - 1] + b->p[b->len / 2];
                free(b->p);
            }
            unsigned bits = 6 + (unsigned)((r >> 16) % 13);   /* final size 64 B .. 512 KiB */
            b->target = ((size_t)1 << bits) + (size_t)((r >> 32) % ((size_t)1 << bits));
            b->doubling = (int)((r >> 40) & 1);               /* half grow by doubling, */
            b->len = 0;                                       /* half by exact appends   */
            b->cap = 16;
            b->p = xmalloc(b->cap);
        }
        size_t chunk = 1 + (size_t)((r >> 48) % 48);
        if (b->len + chunk > b->cap) {
            size_t want = b->doubling ? b->cap * 2 : b->len + chunk;
            while (want < b->len + chunk) want *= 2;
            unsigned char *q = realloc(b->p, want);
            if (!q) {
                fprintf(stderr, "realloc(%zu) failed\n", want);
                exit(2);
            }
            b->p = q;
            b->cap = want;
        }
        memset(b->p + b->len, (int)(i & 0xff), chunk);
        b->len += chunk;
    }
    for (int k = 0; k < LIVE; k++)
        if (v[k].p) {
            sum += v[k].len + v[k].p[0] + v[k].p[v[k].len - 1];
            free(v[k].p);
        }
    return sum;
}

/* ---- trees: binary trees of 32-byte nodes built and freed whole (the classic GC test) ---- */

struct node { struct node *l, *r; long v, pad; };

static struct node *make(int depth, long v)
{
    struct node *n = xmalloc(sizeof *n);
    n->v = v;
    n->pad = 0;
    if (depth > 0) {
        n->l = make(depth - 1, 2 * v);
        n->r = make(depth - 1, 2 * v + 1);
    } else
        n->l = n->r = NULL;
    return n;
}

static uint64_t walk_free(struct node *n)
{
    if (!n) return 0;
    uint64_t s = (uint64_t)n->v + walk_free(n->l) + walk_free(n->r);
    free(n);
    return s;
}

static uint64_t trees(double scale)
{
    uint64_t sum = 0;
    struct node *longlived = make(18, 1); /* 512k nodes alive throughout */
    long rounds = (long)(48 * scale);
    for (long i = 0; i < rounds; i++) {
        int depth = 4 + (int)(i % 13); /* 31 .. 131071 nodes per tree */
        for (int k = 0; k < (1 << (16 - depth)) + 1; k++) sum += walk_free(make(depth, i + k));
    }
    sum += walk_free(longlived);
    return sum;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s churn|mixed|prodcons|pool|realloc|trees [scale]\n", argv[0]);
        return 2;
    }
    double scale = argc > 2 ? atof(argv[2]) : 1.0;
    uint64_t sum;
    if (!strcmp(argv[1], "churn")) sum = churn(scale);
    else if (!strcmp(argv[1], "mixed")) sum = mixed(scale);
    else if (!strcmp(argv[1], "prodcons")) sum = prodcons(scale);
    else if (!strcmp(argv[1], "pool")) sum = pool(scale);
    else if (!strcmp(argv[1], "realloc")) sum = realloc_growth(scale);
    else if (!strcmp(argv[1], "trees")) sum = trees(scale);
    else {
        fprintf(stderr, "unknown workload %s\n", argv[1]);
        return 2;
    }
    printf("%s %llu\n", argv[1], (unsigned long long)sum);
    return 0;
}
