/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The web root held in memory: URL path → bytes, Content-Type and ETag, loaded off the event loop. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"

/* Limits on what one load may hold; going over any is an error naming the file. */
#define STATIC_FILES_MAX 1024U
#define STATIC_FILE_SIZE_MAX (UINT64_C(4) * 1024 * 1024)
#define STATIC_FILES_TOTAL_MAX (UINT64_C(16) * 1024 * 1024)
#define STATIC_FILES_DEPTH_MAX 16U
/* Longest URL path in the table (and accepted by static_files_find()). */
#define STATIC_PATH_MAX 1024U

/* Every file under the root is served below this prefix: web/chat.js is "/static/chat.js". */
#define STATIC_URL_PREFIX "/static/"

typedef struct StaticFile {
        char *path;                     /* "/static/chat.js" */
        unsigned char *data;            /* size bytes (plus a NUL byte not counted in size) */
        size_t size;
        const char *content_type;       /* static string, e.g. "text/javascript; charset=utf-8" */
        char etag[24];                  /* strong ETag with its quotes: "\"0123456789abcdef\"" */
} StaticFile;

typedef struct StaticFiles StaticFiles;

typedef void (*StaticFilesLoadHandler)(StaticFiles *loaded /* NULL on error; the callee owns it */,
                                       int error, void *userdata);

/* Loads every regular file below root, recursively. Skipped: names starting
 * with "." (dotfiles and dot-directories), names holding ".." or bytes other
 * than [A-Za-z0-9._~+@-] (static_files_find() refuses such paths, and
 * %-escapes, so they could never be requested), anything neither a regular file nor a
 * directory, symlinks to directories, and symlinks whose target is not below
 * the root (a symlink to a file inside the root is served). Synchronous: for
 * startup, before the loop runs, and for the worker of the async variant.
 *
 * Errors: -EFBIG when a file is over STATIC_FILE_SIZE_MAX or the total over
 * STATIC_FILES_TOTAL_MAX, -E2BIG over STATIC_FILES_MAX files, -ELOOP deeper than
 * STATIC_FILES_DEPTH_MAX, -ENAMETOOLONG over STATIC_PATH_MAX, -ENOMEM, or the
 * errno of a failed open/read. static_files_load() logs the file at fault
 * (as the caller only sees an errno); the _full variant hands its URL path
 * (or NULL when no single file is at fault) to ret_bad_path instead and logs
 * nothing. ret_bad_path may be NULL and is written only on failure. */
int static_files_load(StaticFiles **ret, const char *root);
int static_files_load_full(StaticFiles **ret, const char *root, char **ret_bad_path);

/* Loads on a worker thread and calls cb back on the loop (through an eventfd
 * source) with the result; for SIGHUP. The file at fault of a failed load is
 * logged on the loop before cb runs. cb never runs after e is freed (nor
 * when the loop stops before the load finishes); the loaded table is then
 * freed by whichever side finishes last. Returns -errno when the thread or
 * the source could not be set up; cb is then never called. */
int static_files_load_async(sd_event *e, const char *root, StaticFilesLoadHandler cb, void *userdata);

/* Exact match on a URL path without query ("/static/chat.js"). Refuses
 * (NULL) anything not starting with "/", holding "..", "//", "\\", "%"
 * (no decoding is done here: an escaped path simply does not exist), bytes
 * outside printable ASCII, or longer than STATIC_PATH_MAX. O(log n). */
const StaticFile *static_files_find(const StaticFiles *s, const char *url_path);

/* The same for a path relative to the root: "index.html" finds
 * "/static/index.html". For the pages the daemon serves at "/" and "/login". */
const StaticFile *static_files_find_name(const StaticFiles *s, const char *name);

/* Number of files and their total bytes, for logging after a (re)load. */
size_t static_files_count(const StaticFiles *s);
size_t static_files_total_size(const StaticFiles *s);

StaticFiles *static_files_free(StaticFiles *s);
DEFINE_CLEANUP_FUNC(StaticFiles *, static_files_free);
