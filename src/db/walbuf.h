/* A SQLite VFS that writes each transaction's WAL frames in large writes instead of two
 * write(2) calls per page (see walbuf.c). */
#ifndef SHOPD_DB_WALBUF_H
#define SHOPD_DB_WALBUF_H

/* Registers the VFS on first use (not the default one) and returns its name for
 * sqlite3_open_v2(); NULL if SQLite has no default VFS. Call it before starting threads
 * that open databases. */
const char *walbuf_vfs_name(void);

/* How many write calls have reached WAL files through the VFS since the process
 * started (for tests). */
unsigned long walbuf_writes(void);

#endif
