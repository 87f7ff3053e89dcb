/* section.c: layer 1, section objects and the handle table.
 *
 * A section is a shareable memory object: a memfd (unnamed pagefile-backed), a POSIX shared
 * memory object (named pagefile-backed, so other host processes open it by name), or a file.
 * It owns its commit bitmap (SEC_RESERVE: commits are section-wide, every view sees them) and
 * is reference-counted by handles and views. Views themselves are allocations of an address
 * space and live in mm.c (_pa_mm_map_view). Handles name sections and files in one table for
 * the whole host process.
 *
 * Named pagefile sections start with a header page in the shared object: a magic, the size,
 * the protection, a count of open handles across host processes, and the commit bitmap. The
 * name disappears (shm_unlink) when the last handle anywhere is closed, even while views
 * remain (fact 91); the data lives on in those views.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"

#define PA_SHM_MAGIC 0x70795f7365637431ull /* "pysect1" */

/* ------------------------------------------------------------------------------------------ */
/* Handle table                                                                                */

enum { H_FREE = 0, H_SECTION = 1, H_FILE = 2 };

typedef struct {
    int type;
    DWORD access;
    pa_section_t *section; /* H_SECTION */
    int fd;                /* H_FILE */
} handle_entry_t;

#define PA_MAX_HANDLES 65536
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static handle_entry_t *table;  /* PA_MAX_HANDLES entries, allocated on first use */
static size_t table_hint;      /* no free entry below */
static pa_section_t *named;    /* published named sections (linked by next) */

static HANDLE handle_value(size_t index) { return (HANDLE)(uintptr_t)((index + 1) * 4); }

/* The entry behind h, or NULL. table_lock held. */
static handle_entry_t *entry_locked(HANDLE h)
{
    uintptr_t v = (uintptr_t)h;
    if (!table || v == 0 || (v & 3) || v / 4 > PA_MAX_HANDLES) return NULL;
    handle_entry_t *e = &table[v / 4 - 1];
    return e->type == H_FREE ? NULL : e;
}

/* A free entry, or NULL when the table is full. table_lock held. */
static handle_entry_t *new_entry_locked(HANDLE *h)
{
    if (!table) {
        table = _pa_os_alloc(PA_MAX_HANDLES * sizeof *table);
        if (!table) return NULL;
    }
    for (size_t i = table_hint; i < PA_MAX_HANDLES; i++) {
        if (table[i].type == H_FREE) {
            table_hint = i + 1;
            *h = handle_value(i);
            return &table[i];
        }
    }
    return NULL;
}

static void free_entry_locked(handle_entry_t *e)
{
    size_t i = (size_t)(e - table);
    memset(e, 0, sizeof *e);
    if (i < table_hint) table_hint = i;
}

/* ------------------------------------------------------------------------------------------ */
/* Section objects                                                                             */

void _pa_section_ref(pa_section_t *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void _pa_section_unref(pa_section_t *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    if (s->header_shared) _pa_os_unmap(s->header, s->header_size);
    else _pa_os_free(s->header, s->header_size);
    _pa_os_close(s->fd);
    _pa_os_free(s, sizeof *s);
}

int _pa_section_page_committed(const pa_section_t *s, uint64_t page)
{
    if (!(s->attributes & SEC_RESERVE)) return 1;
    uint64_t w = atomic_load_explicit(&s->header->committed[page >> 6], memory_order_acquire);
    return (int)((w >> (page & 63)) & 1);
}

void _pa_section_commit(pa_section_t *s, uint64_t first, uint64_t n)
{
    if (!(s->attributes & SEC_RESERVE)) return;
    for (uint64_t i = first; i < first + n; i++)
        atomic_fetch_or_explicit(&s->header->committed[i >> 6], (uint64_t)1 << (i & 63),
                                 memory_order_release);
    atomic_fetch_add_explicit(&s->header->commit_gen, 1, memory_order_release);
}

uint32_t _pa_section_generation(const pa_section_t *s)
{
    return atomic_load_explicit(&s->header->commit_gen, memory_order_acquire);
}

static size_t header_bytes(uint64_t size)
{
    uint64_t pages = (size + PA_PAGE_SIZE - 1) / PA_PAGE_SIZE;
    return _pa_align_up(sizeof(pa_section_header_t) + ((pages + 63) / 64) * 8, PA_PAGE_SIZE);
}

/* "/pyalloc.<name>" with '/' and '%' escaped, or -1 if too long. */
static int shm_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "/pyalloc.");
    for (const char *c = name; *c; c++) {
        if (n + 4 >= cap) return -1;
        if (*c == '/' || *c == '%') n += (size_t)snprintf(out + n, cap - n, "%%%02X", (unsigned char)*c);
        else out[n++] = *c;
    }
    out[n] = 0;
    return 0;
}

static pa_section_t *find_named_locked(const char *name)
{
    for (pa_section_t *s = named; s; s = s->next)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

static void publish_locked(pa_section_t *s, const char *name)
{
    snprintf(s->name, sizeof s->name, "%s", name);
    s->published = 1;
    s->next = named;
    named = s;
}

static void unpublish_locked(pa_section_t *s)
{
    for (pa_section_t **pp = &named; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    s->published = 0;
}

/* One handle fewer across host processes: the last one anywhere takes the name away, while
 * views keep the data (fact 91). table_lock held. */
static void drop_shared_handle_locked(pa_section_t *s)
{
    if (!s->header_shared || atomic_fetch_sub(&s->header->handles, 1) != 1) return;
    char path[300];
    atomic_store(&s->header->magic, 0);
    if (shm_name(s->name, path, sizeof path) == 0) _pa_os_shm_unlink(path);
}

/* Allocates a section object with refs = 1 around fd (taken over). */
static pa_section_t *section_new(int fd)
{
    pa_section_t *s = _pa_os_alloc(sizeof *s);
    if (!s) return NULL;
    atomic_init(&s->refs, 1);
    s->fd = fd;
    return s;
}

/* Maps the header of a named pagefile object and joins it: NULL if it is being destroyed (no
 * open handles) or malformed. */
static pa_section_t *join_shared_locked(int fd)
{
    uint64_t fsize;
    pa_section_header_t *hdr;
    if (_pa_os_fd_size(fd, &fsize) || fsize < PA_PAGE_SIZE) return NULL;
    if (_pa_os_map_shared(fd, 0, PA_PAGE_SIZE, (void **)&hdr)) return NULL;
    /* The creator initialises the header right after creating the object. */
    for (int spin = 0; spin < 100000 && atomic_load(&hdr->magic) != PA_SHM_MAGIC; spin++)
        sched_yield();
    uint64_t size = hdr->size;
    size_t hsize = header_bytes(size);
    _pa_os_unmap(hdr, PA_PAGE_SIZE);
    if (_pa_os_map_shared(fd, 0, hsize, (void **)&hdr)) return NULL;
    uint32_t h = atomic_load(&hdr->handles);
    do {
        if (h == 0 || atomic_load(&hdr->magic) != PA_SHM_MAGIC) {
            _pa_os_unmap(hdr, hsize);
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&hdr->handles, &h, h + 1));
    pa_section_t *s = section_new(fd);
    if (!s) {
        atomic_fetch_sub(&hdr->handles, 1);
        _pa_os_unmap(hdr, hsize);
        return NULL;
    }
    s->header = hdr;
    s->header_size = hsize;
    s->header_shared = 1;
    s->size = size;
    s->data_offset = hsize;
    s->protect = hdr->protect;
    s->attributes = hdr->attributes;
    return s;
}

/* Creates or opens the named pagefile object. STATUS_SUCCESS with *existed set, or a failure. */
static NTSTATUS shared_section_locked(const char *name, uint64_t size, DWORD protect,
                                      DWORD attributes, int create, pa_section_t **out,
                                      int *existed)
{
    char path[300];
    if (shm_name(name, path, sizeof path)) return STATUS_INVALID_PARAMETER;
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = -1, created = 0;
        int err = _pa_os_shm_open(path, create, 0, &fd, &created);
        if (err) return create ? STATUS_NO_MEMORY : STATUS_OBJECT_NAME_NOT_FOUND;
        if (!created) {
            pa_section_t *s = join_shared_locked(fd);
            if (s) {
                *out = s;
                *existed = 1;
                return STATUS_SUCCESS;
            }
            /* Dying or malformed: take the name over. */
            _pa_os_close(fd);
            if (!create) return STATUS_OBJECT_NAME_NOT_FOUND;
            _pa_os_shm_unlink(path);
            continue;
        }
        size_t hsize = header_bytes(size);
        pa_section_header_t *hdr = NULL;
        pa_section_t *s = NULL;
        if (_pa_os_fd_grow(fd, hsize + size) || _pa_os_map_shared(fd, 0, hsize, (void **)&hdr) ||
            !(s = section_new(fd))) {
            if (hdr) _pa_os_unmap(hdr, hsize);
            _pa_os_close(fd);
            _pa_os_shm_unlink(path);
            return STATUS_NO_MEMORY;
        }
        hdr->size = size;
        hdr->protect = protect;
        hdr->attributes = attributes;
        atomic_store(&hdr->handles, 1);
        atomic_store(&hdr->magic, PA_SHM_MAGIC);
        s->header = hdr;
        s->header_size = hsize;
        s->header_shared = 1;
        s->size = size;
        s->data_offset = hsize;
        s->protect = protect;
        s->attributes = attributes;
        *out = s;
        *existed = 0;
        return STATUS_SUCCESS;
    }
    return STATUS_NO_MEMORY;
}

/* Access bits of a PAGE_* base protection: 1 read, 2 write, 4 execute (WRITECOPY reads). */
unsigned _pa_protect_access(DWORD protect)
{
    switch (protect & 0xFF) {
    case PAGE_READONLY: case PAGE_WRITECOPY: return 1;
    case PAGE_READWRITE: return 3;
    case PAGE_EXECUTE: return 4;
    case PAGE_EXECUTE_READ: case PAGE_EXECUTE_WRITECOPY: return 5;
    case PAGE_EXECUTE_READWRITE: return 7;
    default: return 0;
    }
}

static int section_protect_ok(DWORD protect)
{
    switch (protect) {
    case PAGE_READONLY: case PAGE_READWRITE: case PAGE_WRITECOPY: case PAGE_EXECUTE_READ:
    case PAGE_EXECUTE_READWRITE: case PAGE_EXECUTE_WRITECOPY: return 1;
    default: return 0;
    }
}

/* SEC_* checks (k32:test_CreateFileMapping sec_flag_tests); *attr gets the effective value. */
static NTSTATUS check_attributes(DWORD attributes, DWORD *attr)
{
    DWORD a = attributes;
    if (a & SEC_IMAGE)
        return (a & ~(DWORD)SEC_IMAGE) ? STATUS_INVALID_PARAMETER : STATUS_INVALID_IMAGE_NOT_MZ;
    if (a & (SEC_FILE | SEC_LARGE_PAGES)) return STATUS_INVALID_PARAMETER;
    if (a & ~(DWORD)(SEC_RESERVE | SEC_COMMIT | SEC_NOCACHE | SEC_WRITECOMBINE))
        return STATUS_INVALID_PARAMETER;
    if ((a & SEC_RESERVE) && (a & SEC_COMMIT)) return STATUS_INVALID_PARAMETER;
    if ((a & (SEC_NOCACHE | SEC_WRITECOMBINE)) && !(a & (SEC_RESERVE | SEC_COMMIT)))
        return STATUS_INVALID_PARAMETER;
    if ((a & SEC_NOCACHE) && (a & SEC_WRITECOMBINE)) return STATUS_INVALID_PARAMETER;
    if (!(a & SEC_RESERVE)) a |= SEC_COMMIT;
    *attr = a;
    return STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* NT entry points                                                                             */

NTSTATUS pa_nt_file_handle(int fd, HANDLE *handle)
{
    int dup;
    if (fd < 0 || _pa_os_dup(fd, &dup)) return STATUS_INVALID_HANDLE;
    pthread_mutex_lock(&table_lock);
    handle_entry_t *e = new_entry_locked(handle);
    if (e) {
        e->type = H_FILE;
        e->fd = dup;
        e->access = 0;
    }
    pthread_mutex_unlock(&table_lock);
    if (!e) {
        _pa_os_close(dup);
        return STATUS_NO_MEMORY;
    }
    return STATUS_SUCCESS;
}

/* Gives a new handle to s (whose reference the handle takes over). */
static NTSTATUS add_section_handle_locked(pa_section_t *s, DWORD access, HANDLE *handle)
{
    handle_entry_t *e = new_entry_locked(handle);
    if (!e) return STATUS_NO_MEMORY;
    e->type = H_SECTION;
    e->section = s;
    e->access = access;
    s->handles++;
    return STATUS_SUCCESS;
}

NTSTATUS pa_nt_create_section(HANDLE *handle, DWORD access, uint64_t max_size, DWORD protect,
                              DWORD attributes, HANDLE file, const char *name, int *existed)
{
    DWORD attr;
    NTSTATUS st;
    int dummy;
    if (!existed) existed = &dummy;
    *existed = 0;
    if (!section_protect_ok(protect)) return STATUS_INVALID_PAGE_PROTECTION;
    if ((st = check_attributes(attributes, &attr))) return st;
    int pagefile = file == NULL || file == INVALID_HANDLE_VALUE;
    if (pagefile && max_size == 0) return STATUS_INVALID_PARAMETER;
    if (name && !*name) name = NULL;

    pthread_mutex_lock(&table_lock);
    pa_section_t *s = NULL;
    int fd = -1;
    uint64_t data_size = 0;
    if (name && (s = find_named_locked(name))) {
        /* An existing name: a handle to that object; the new size is ignored (fact 85). */
        _pa_section_ref(s);
        if (s->header_shared) atomic_fetch_add(&s->header->handles, 1);
        *existed = 1;
        goto add_handle;
    }
    if (pagefile) {
        uint64_t size = _pa_align_up(max_size, PA_PAGE_SIZE); /* fact 88 */
        if (size < max_size) {
            st = STATUS_SECTION_TOO_BIG;
            goto fail;
        }
        if (name) {
            st = shared_section_locked(name, size, protect, attr, 1, &s, existed);
            if (st) goto fail;
            publish_locked(s, name);
            goto add_handle;
        }
        if (_pa_os_memfd(size, &fd)) {
            st = STATUS_NO_MEMORY;
            goto fail;
        }
        data_size = size;
    } else {
        handle_entry_t *fe = entry_locked(file);
        int can_read, can_write;
        uint64_t fsize;
        if (!fe || fe->type != H_FILE) {
            st = STATUS_INVALID_HANDLE;
            goto fail;
        }
        if (_pa_os_fd_access(fe->fd, &can_read, &can_write) || _pa_os_fd_size(fe->fd, &fsize)) {
            st = STATUS_INVALID_HANDLE;
            goto fail;
        }
        /* fact 90: reading is always needed, writing for the READWRITE protections. */
        int writable = (_pa_protect_access(protect) & 2) != 0;
        if (!can_read || (writable && !can_write)) {
            st = STATUS_ACCESS_DENIED;
            goto fail;
        }
        data_size = max_size ? max_size : fsize;
        if (data_size == 0) { /* fact 89 */
            st = STATUS_MAPPED_FILE_SIZE_ZERO;
            goto fail;
        }
        if (data_size > fsize) {
            if (!writable) {
                st = STATUS_SECTION_TOO_BIG;
                goto fail;
            }
            if (_pa_os_fd_grow(fe->fd, data_size)) {
                st = STATUS_NO_MEMORY;
                goto fail;
            }
        }
        if (_pa_os_dup(fe->fd, &fd)) {
            st = STATUS_NO_MEMORY;
            goto fail;
        }
        attr = (attr & ~(DWORD)SEC_RESERVE) | SEC_COMMIT; /* data files are always committed */
    }
    s = section_new(fd);
    if (!s) {
        st = STATUS_NO_MEMORY;
        goto fail;
    }
    fd = -1;
    s->size = data_size;
    s->file_backed = !pagefile;
    s->protect = protect;
    s->attributes = attr;
    s->header_size = header_bytes(s->size);
    s->header = _pa_os_alloc(s->header_size);
    if (!s->header) {
        st = STATUS_NO_MEMORY;
        goto fail;
    }
    if (name) publish_locked(s, name);
add_handle:
    st = add_section_handle_locked(s, access, handle);
    if (st) goto fail;
    pthread_mutex_unlock(&table_lock);
    return STATUS_SUCCESS;
fail:
    if (s) {
        /* Undo only what this call did: an existing object keeps its name and handles. */
        if (s->published && s->handles == 0) unpublish_locked(s);
        drop_shared_handle_locked(s);
        _pa_section_unref(s);
    }
    _pa_os_close(fd);
    pthread_mutex_unlock(&table_lock);
    return st;
}

NTSTATUS pa_nt_open_section(HANDLE *handle, DWORD access, const char *name)
{
    if (!name || !*name) return STATUS_INVALID_PARAMETER;
    pthread_mutex_lock(&table_lock);
    int existed;
    NTSTATUS st = STATUS_SUCCESS;
    pa_section_t *s = find_named_locked(name);
    if (s) {
        _pa_section_ref(s);
        if (s->header_shared) atomic_fetch_add(&s->header->handles, 1);
    } else {
        st = shared_section_locked(name, 0, 0, 0, 0, &s, &existed);
        if (st == STATUS_SUCCESS) publish_locked(s, name);
    }
    if (st == STATUS_SUCCESS && (st = add_section_handle_locked(s, access, handle))) {
        if (s->handles == 0) unpublish_locked(s);
        drop_shared_handle_locked(s);
        _pa_section_unref(s);
    }
    pthread_mutex_unlock(&table_lock);
    return st;
}

NTSTATUS pa_nt_query_section(HANDLE section, uint64_t *size, DWORD *attributes, DWORD *protect)
{
    pthread_mutex_lock(&table_lock);
    handle_entry_t *e = entry_locked(section);
    NTSTATUS st = e && e->type == H_SECTION ? STATUS_SUCCESS : STATUS_INVALID_HANDLE;
    if (st == STATUS_SUCCESS) {
        if (size) *size = e->section->size;
        if (attributes) *attributes = e->section->attributes | (e->section->file_backed ? SEC_FILE : 0);
        if (protect) *protect = e->section->protect;
    }
    pthread_mutex_unlock(&table_lock);
    return st;
}

NTSTATUS pa_nt_close(HANDLE handle)
{
    pthread_mutex_lock(&table_lock);
    handle_entry_t *e = entry_locked(handle);
    if (!e) {
        pthread_mutex_unlock(&table_lock);
        return STATUS_INVALID_HANDLE;
    }
    pa_section_t *s = NULL;
    if (e->type == H_FILE) {
        _pa_os_close(e->fd);
    } else {
        s = e->section;
        if (--s->handles == 0 && s->published) unpublish_locked(s);
        drop_shared_handle_locked(s);
    }
    free_entry_locked(e);
    pthread_mutex_unlock(&table_lock);
    if (s) _pa_section_unref(s);
    return STATUS_SUCCESS;
}

/* The section behind handle, referenced, with the handle's access, or NULL. */
pa_section_t *_pa_section_from_handle(HANDLE handle, DWORD *access)
{
    pthread_mutex_lock(&table_lock);
    handle_entry_t *e = entry_locked(handle);
    pa_section_t *s = e && e->type == H_SECTION ? e->section : NULL;
    if (s) {
        _pa_section_ref(s);
        *access = e->access;
    }
    pthread_mutex_unlock(&table_lock);
    return s;
}

NTSTATUS pa_nt_map_view_of_section(HANDLE section, pa_process_t *p, void **base, uint64_t offset,
                                   size_t *size, DWORD protect)
{
    DWORD access;
    pa_section_t *s = _pa_section_from_handle(section, &access);
    if (!s) return STATUS_INVALID_HANDLE;
    NTSTATUS st = STATUS_SUCCESS;
    unsigned want = _pa_protect_access(protect);
    unsigned have = _pa_protect_access(s->protect);
    DWORD base_prot = protect & 0xFF;
    int copy = base_prot == PAGE_WRITECOPY || base_prot == PAGE_EXECUTE_WRITECOPY;
    /* Handle rights (fact 96): even a PAGE_NOACCESS view needs SECTION_MAP_READ. */
    if (!(access & SECTION_MAP_READ) || ((want & 2) && !copy && !(access & SECTION_MAP_WRITE)) ||
        ((want & 4) && !(access & (SECTION_MAP_EXECUTE | SECTION_MAP_EXECUTE_EXPLICIT)))) {
        st = STATUS_ACCESS_DENIED;
        goto out;
    }
    /* The section's protection must allow the view (fact 96): writes need a writable section
     * unless they are copy-on-write; execution needs an executable one. */
    if (((want & 2) && !copy && !(have & 2)) || ((want & 4) && !(have & 4))) {
        st = STATUS_ACCESS_DENIED;
        goto out;
    }
    if (offset & (PA_GRANULARITY - 1)) { /* fact 93 */
        st = STATUS_MAPPED_ALIGNMENT;
        goto out;
    }
    if (*base && ((uintptr_t)*base & (PA_GRANULARITY - 1))) {
        st = STATUS_MAPPED_ALIGNMENT;
        goto out;
    }
    if (offset >= s->size) { /* fact 94 */
        st = STATUS_INVALID_PARAMETER;
        goto out;
    }
    if (*size == 0) *size = (size_t)(s->size - offset);
    else if (*size > s->size - offset) {
        st = STATUS_INVALID_VIEW_SIZE;
        goto out;
    }
    st = _pa_mm_map_view(p, s, base, offset, size, protect);
out:
    _pa_section_unref(s); /* the view took its own reference */
    return st;
}
