/* A SQLite VFS shim that gathers a transaction's WAL frames into large writes.
 *
 * SQLite appends a committed transaction to the WAL one frame at a time, and each frame
 * is two write(2) calls: its 24-byte header, then the page. A group commit of a busy
 * loop turn writes hundreds of pages, so a checkout paid for about ten system calls of
 * 2–3 µs each at commit (docs/benchmarks.md). This shim wraps the default VFS and, for
 * WAL files only, collects consecutive writes in a buffer and hands them to the real
 * file in as few calls as the default VFS accepts (it writes up to 128 KiB at a time).
 *
 * When the buffer goes out. A frame header carries, in bytes 4..7, the database size
 * after the commit for the last frame of a transaction and zero for every other frame.
 * The shim reads that field; once the page of a commit frame is in the buffer, the
 * buffer is written before xWrite returns. SQLite makes a transaction visible to other
 * connections (the checkpointer, a sqlite3 shell) only after that, when it updates the
 * WAL index in shared memory, so no reader can see a frame that is still in the buffer,
 * and a commit that returned is in the operating system's cache exactly as without the
 * shim (the guarantee synchronous=NORMAL gives). The buffer is also written first
 * whenever a write does not continue it, when it is full, and before any read, size,
 * truncate, sync or close of the file. A failed write is reported from the call that
 * made it, so SQLite sees it where the commit happens and rolls the transaction back.
 *
 * Every other file (the database, temporary files) goes straight to the default VFS.
 */
#include "db/walbuf.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    WAL_HEADER_SIZE = 32,
    FRAME_HEADER_SIZE = 24,
    /* The default VFS writes at most 128 KiB - 1 bytes in one call (and reports a short
     * write as SQLITE_FULL): 31 frames of 4 KiB pages per write. */
    WALBUF_CAP = 0x1ffff,
};

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, placed right after this struct */
    bool wal;
    bool commit_pending; /* the last buffered frame header was a commit frame's */
    unsigned char *buf;  /* WALBUF_CAP bytes once the first frame arrives */
    size_t len;
    sqlite3_int64 off; /* where buf[0] goes in the file */
} wb_file_t;

static sqlite3_vfs wb_vfs;
static sqlite3_vfs *real_vfs;
static atomic_ulong wal_writes; /* write calls that reached a WAL file */

static sqlite3_file *real_of(sqlite3_file *f) {
    return ((wb_file_t *)f)->real;
}

/* One write call to the WAL file itself. */
static int wal_write(wb_file_t *p, const void *data, size_t n, sqlite3_int64 off) {
    atomic_fetch_add_explicit(&wal_writes, 1, memory_order_relaxed);
    return p->real->pMethods->xWrite(p->real, data, (int)n, off);
}

static int wb_flush(wb_file_t *p) {
    if (p->len == 0) return SQLITE_OK;
    size_t n = p->len;
    p->len = 0;
    p->commit_pending = false;
    return wal_write(p, p->buf, n, p->off);
}

static int wb_close(sqlite3_file *f) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    free(p->buf);
    p->buf = NULL;
    int rc2 = p->real->pMethods->xClose(p->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *f, void *out, int n, sqlite3_int64 off) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    if (rc != SQLITE_OK) return rc;
    return p->real->pMethods->xRead(p->real, out, n, off);
}

static int wb_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off) {
    wb_file_t *p = (wb_file_t *)f;
    if (!p->wal) return p->real->pMethods->xWrite(p->real, data, n, off);
    int rc;
    if (p->len > 0 && (off != p->off + (sqlite3_int64)p->len || p->len + (size_t)n > WALBUF_CAP)) {
        bool commit = p->commit_pending && off == p->off + (sqlite3_int64)p->len;
        if ((rc = wb_flush(p)) != SQLITE_OK) return rc;
        p->commit_pending = commit; /* a commit frame split across a full buffer */
    }
    if ((size_t)n > WALBUF_CAP || (!p->buf && !(p->buf = malloc(WALBUF_CAP)))) {
        p->commit_pending = false; /* nothing is buffered: this write goes out by itself */
        return wal_write(p, data, (size_t)n, off);
    }
    if (p->len == 0) p->off = off;
    memcpy(p->buf + p->len, data, (size_t)n);
    p->len += (size_t)n;
    if (n == FRAME_HEADER_SIZE && off >= WAL_HEADER_SIZE) {
        const unsigned char *h = data;
        p->commit_pending = (h[4] | h[5] | h[6] | h[7]) != 0;
        return SQLITE_OK;
    }
    if (p->commit_pending) return wb_flush(p); /* the commit frame's page: the end */
    return SQLITE_OK;
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    if (rc != SQLITE_OK) return rc;
    return p->real->pMethods->xTruncate(p->real, size);
}

static int wb_sync(sqlite3_file *f, int flags) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    if (rc != SQLITE_OK) return rc;
    return p->real->pMethods->xSync(p->real, flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    if (rc != SQLITE_OK) return rc;
    return p->real->pMethods->xFileSize(p->real, size);
}

static int wb_lock(sqlite3_file *f, int lock) {
    return real_of(f)->pMethods->xLock(real_of(f), lock);
}
static int wb_unlock(sqlite3_file *f, int lock) {
    return real_of(f)->pMethods->xUnlock(real_of(f), lock);
}
static int wb_check_reserved(sqlite3_file *f, int *out) {
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int wb_file_control(sqlite3_file *f, int op, void *arg) {
    wb_file_t *p = (wb_file_t *)f;
    if (op == SQLITE_FCNTL_SYNC) {
        int rc = wb_flush(p);
        if (rc != SQLITE_OK) return rc;
    }
    return p->real->pMethods->xFileControl(p->real, op, arg);
}
static int wb_sector_size(sqlite3_file *f) {
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}
static int wb_device_characteristics(sqlite3_file *f) {
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
static int wb_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out) {
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, out);
}
static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
static void wb_shm_barrier(sqlite3_file *f) {
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}
static int wb_shm_unmap(sqlite3_file *f, int delete_flag) {
    return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}
static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out) {
    wb_file_t *p = (wb_file_t *)f;
    int rc = wb_flush(p);
    if (rc != SQLITE_OK) return rc;
    return p->real->pMethods->xFetch(p->real, off, n, out);
}
static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page) {
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, page);
}

/* One table per version the default VFS's files speak, so SQLite never calls a method
 * the real file lacks. */
#define WB_METHODS(version)                                                                        \
    {                                                                                              \
        version, wb_close, wb_read, wb_write, wb_truncate, wb_sync, wb_file_size, wb_lock,         \
            wb_unlock, wb_check_reserved, wb_file_control, wb_sector_size,                         \
            wb_device_characteristics, wb_shm_map, wb_shm_lock, wb_shm_barrier, wb_shm_unmap,      \
            wb_fetch, wb_unfetch                                                                   \
    }
static const sqlite3_io_methods wb_methods[4] = {WB_METHODS(0), WB_METHODS(1), WB_METHODS(2),
                                                 WB_METHODS(3)};

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    (void)vfs;
    wb_file_t *p = (wb_file_t *)f;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)(p + 1);
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
    if (rc != SQLITE_OK || !p->real->pMethods) {
        p->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    int version = p->real->pMethods->iVersion;
    p->base.pMethods = &wb_methods[version < 0 ? 0 : version > 3 ? 3 : version];
    p->wal = (flags & SQLITE_OPEN_WAL) != 0;
    return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *wb_dlopen(sqlite3_vfs *v, const char *name) {
    (void)v;
    return real_vfs->xDlOpen(real_vfs, name);
}
static void wb_dlerror(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    real_vfs->xDlError(real_vfs, n, out);
}
static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, sym);
}
static void wb_dlclose(sqlite3_vfs *v, void *h) {
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}
static int wb_randomness(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int wb_sleep(sqlite3_vfs *v, int us) {
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}
static int wb_current_time(sqlite3_vfs *v, double *out) {
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int wb_get_last_error(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}
static int wb_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

const char *walbuf_vfs_name(void) {
    static bool registered;
    if (registered) return wb_vfs.zName;
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs) return NULL;
    wb_vfs = (sqlite3_vfs){
        .iVersion = real_vfs->iVersion < 2 ? real_vfs->iVersion : 2,
        .szOsFile = (int)sizeof(wb_file_t) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = "shopd-walbuf",
        .xOpen = wb_open,
        .xDelete = wb_delete,
        .xAccess = wb_access,
        .xFullPathname = wb_full_pathname,
        .xDlOpen = wb_dlopen,
        .xDlError = wb_dlerror,
        .xDlSym = wb_dlsym,
        .xDlClose = wb_dlclose,
        .xRandomness = wb_randomness,
        .xSleep = wb_sleep,
        .xCurrentTime = wb_current_time,
        .xGetLastError = wb_get_last_error,
        .xCurrentTimeInt64 = real_vfs->iVersion >= 2 ? wb_current_time_int64 : NULL,
    };
    if (sqlite3_vfs_register(&wb_vfs, 0) != SQLITE_OK) return NULL;
    registered = true;
    return wb_vfs.zName;
}

unsigned long walbuf_writes(void) {
    return atomic_load_explicit(&wal_writes, memory_order_relaxed);
}
