/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The web root held in memory: URL path → bytes, Content-Type and ETag, loaded off the event loop. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "net/static-files.h"

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

struct StaticFiles {
        StaticFile *files;              /* sorted by path */
        size_t n_files;
        size_t total_size;
};

/* State of one load: the table growing, and which file went wrong. */
typedef struct Loader {
        int root_fd;
        StaticFile *files;
        size_t n_files, n_allocated;
        uint64_t total_size;
        char *bad_path;
} Loader;

static const struct {
        const char *extension;
        const char *content_type;
} content_types[] = {
        { "html",  "text/html; charset=utf-8" },
        { "js",    "text/javascript; charset=utf-8" },
        { "mjs",   "text/javascript; charset=utf-8" },
        { "css",   "text/css; charset=utf-8" },
        { "svg",   "image/svg+xml" },
        { "png",   "image/png" },
        { "ico",   "image/vnd.microsoft.icon" },
        { "json",  "application/json" },
        { "woff2", "font/woff2" },
        { "txt",   "text/plain; charset=utf-8" },
};

static const char *content_type_for(const char *path) {
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

        if (dot && (!slash || dot > slash))
                for (size_t i = 0; i < ELEMENTSOF(content_types); i++)
                        if (strcasecmp(dot + 1, content_types[i].extension) == 0)
                                return content_types[i].content_type;
        return "application/octet-stream";
}

/* FNV-1a with a splitmix64 finaliser: not cryptographic, and need not be —
 * the content is ours; the ETag only has to change when the bytes do. */
static void etag_format(char ret[24], const unsigned char *data, size_t size) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < size; i++) {
                h ^= data[i];
                h *= UINT64_C(0x100000001b3);
        }
        h ^= size;
        h ^= h >> 30;
        h *= UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        h ^= h >> 31;

        snprintf(ret, 24, "\"%016" PRIx64 "\"", h);
}

/* Names a browser can ask for verbatim: static_files_find() refuses
 * %-escapes, so anything else would be unreachable anyway. */
static bool name_is_servable(const char *name) {
        if (name[0] == '.' || strstr(name, ".."))
                return false;
        for (const char *p = name; *p; p++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~+@-", *p))
                        return false;
        return true;
}

static void static_file_done(StaticFile *f) {
        free(f->path);
        free(f->data);
}

static int loader_fail(Loader *l, int r, const char *rel) {
        if (!l->bad_path && rel)
                if (asprintf(&l->bad_path, STATIC_URL_PREFIX "%s", rel) < 0)
                        l->bad_path = NULL;
        return r;
}

/* Reads to EOF, never more than STATIC_FILE_SIZE_MAX: the size from fstat()
 * is only a hint, the file may change under us. */
static int read_bounded(int fd, size_t size_hint, unsigned char **ret, size_t *ret_size) {
        _cleanup_free_ unsigned char *buf = NULL;
        size_t size = 0, allocated = MIN(size_hint, (size_t) STATIC_FILE_SIZE_MAX) + 1;

        buf = malloc(allocated);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t n;

                if (size + 1 >= allocated) {
                        unsigned char *p;

                        if (size > STATIC_FILE_SIZE_MAX)
                                return -EFBIG;
                        allocated = MIN(MAX(allocated * 2, (size_t) 4096), (size_t) STATIC_FILE_SIZE_MAX + 2);
                        p = realloc(buf, allocated);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }

                n = read(fd, buf + size, allocated - 1 - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (size > STATIC_FILE_SIZE_MAX)
                return -EFBIG;

        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* Takes fd (an open regular file) and adds it as rel. */
static int loader_add(Loader *l, int fd, const char *rel) {
        _cleanup_(closep) int fd_owned = fd;
        _cleanup_free_ unsigned char *data = NULL;
        _cleanup_free_ char *path = NULL;
        struct stat st;
        size_t size = 0;
        int r;

        if (fstat(fd_owned, &st) < 0)
                return loader_fail(l, -errno, rel);
        if (!S_ISREG(st.st_mode))
                return 0;
        if ((uint64_t) st.st_size > STATIC_FILE_SIZE_MAX)
                return loader_fail(l, -EFBIG, rel);
        if (l->n_files >= STATIC_FILES_MAX)
                return loader_fail(l, -E2BIG, rel);

        r = read_bounded(fd_owned, (size_t) st.st_size, &data, &size);
        if (r < 0)
                return loader_fail(l, r, rel);

        l->total_size += size;
        if (l->total_size > STATIC_FILES_TOTAL_MAX)
                return loader_fail(l, -EFBIG, rel);

        if (asprintf(&path, STATIC_URL_PREFIX "%s", rel) < 0)
                return -ENOMEM;

        if (!GREEDY_REALLOC(l->files, l->n_allocated, l->n_files + 1))
                return -ENOMEM;

        StaticFile *f = &l->files[l->n_files++];
        *f = (StaticFile) {
                .path = TAKE_PTR(path),
                .data = TAKE_PTR(data),
                .size = size,
                .content_type = content_type_for(rel),
        };
        etag_format(f->etag, f->data, f->size);
        return 0;
}

/* A symlink is followed only while it resolves beneath the root; the kernel
 * checks every component (RESOLVE_BENEATH), so "../" and absolute targets
 * fail with EXDEV. Without openat2() (Linux < 5.6) symlinks are skipped. */
static int open_beneath(int root_fd, const char *rel) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd;

        fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
        return fd < 0 ? -errno : (int) fd;
}

static int loader_walk(Loader *l, int dir_fd, const char *prefix, unsigned depth);

static int loader_entry(Loader *l, int dir_fd, const char *prefix, const char *name, unsigned depth) {
        _cleanup_free_ char *rel = NULL;
        struct stat st;
        int fd;

        if (!name_is_servable(name))
                return 0;
        if (asprintf(&rel, "%s%s", prefix, name) < 0)
                return -ENOMEM;
        if (strlen(STATIC_URL_PREFIX) + strlen(rel) > STATIC_PATH_MAX)
                return loader_fail(l, -ENAMETOOLONG, rel);

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : loader_fail(l, -errno, rel);

        if (S_ISDIR(st.st_mode)) {
                _cleanup_free_ char *sub = NULL;

                if (depth >= STATIC_FILES_DEPTH_MAX)
                        return loader_fail(l, -ELOOP, rel);
                if (asprintf(&sub, "%s/", rel) < 0)
                        return -ENOMEM;
                fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return loader_fail(l, -errno, rel);
                return loader_walk(l, fd, sub, depth + 1);
        }

        if (S_ISREG(st.st_mode)) {
                fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd < 0)
                        return errno == ENOENT ? 0 : loader_fail(l, -errno, rel);
                return loader_add(l, fd, rel);
        }

        if (S_ISLNK(st.st_mode)) {
                fd = open_beneath(l->root_fd, rel);
                if (fd < 0)
                        return 0;       /* escapes the root, dangling, a loop, or no openat2() */
                return loader_add(l, fd, rel);   /* skips what is not a regular file */
        }

        return 0;       /* sockets, FIFOs, devices */
}

/* Takes dir_fd. */
static int loader_walk(Loader *l, int dir_fd, const char *prefix, unsigned depth) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int r;

        d = fdopendir(dir_fd);
        if (!d) {
                r = -errno;
                safe_close(dir_fd);
                return r;
        }

        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de)
                        return errno > 0 ? loader_fail(l, -errno, prefix[0] ? prefix : NULL) : 0;

                r = loader_entry(l, dirfd(d), prefix, de->d_name, depth);
                if (r < 0)
                        return r;
        }
}

static int static_file_compare(const void *a, const void *b) {
        const StaticFile *x = a, *y = b;
        return strcmp(x->path, y->path);
}

int static_files_load_full(StaticFiles **ret, const char *root, char **ret_bad_path) {
        _cleanup_(static_files_freep) StaticFiles *s = NULL;
        Loader l = { .root_fd = -EBADF };
        int fd, r;

        if (!ret || !root)
                return -EINVAL;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;

        l.root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (l.root_fd < 0)
                return -errno;

        fd = fcntl(l.root_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                r = -errno;
        else
                r = loader_walk(&l, fd, "", 0);
        safe_close(l.root_fd);

        /* Hand whatever was read to s, so that one free path cleans up. */
        s->files = l.files;
        s->n_files = l.n_files;
        s->total_size = (size_t) l.total_size;
        if (r < 0) {
                if (ret_bad_path)
                        *ret_bad_path = TAKE_PTR(l.bad_path);
                free(l.bad_path);
                return r;
        }
        free(l.bad_path);

        if (s->n_files > 0)
                qsort(s->files, s->n_files, sizeof *s->files, static_file_compare);
        *ret = TAKE_PTR(s);
        return 0;
}

int static_files_load(StaticFiles **ret, const char *root) {
        _cleanup_free_ char *bad_path = NULL;
        int r;

        r = static_files_load_full(ret, root, &bad_path);
        if (r < 0 && bad_path)
                log_error_errno(r, "Failed to load %s from web root %s: %m", bad_path, root);
        return r;
}

const StaticFile *static_files_find(const StaticFiles *s, const char *url_path) {
        StaticFile key;
        size_t n;

        if (!s || !url_path || url_path[0] != '/')
                return NULL;

        n = strnlen(url_path, STATIC_PATH_MAX + 1);
        if (n > STATIC_PATH_MAX)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) url_path[i];
                if (c < 0x21 || c > 0x7e || c == '%' || c == '\\')
                        return NULL;
        }
        if (strstr(url_path, "..") || strstr(url_path, "//"))
                return NULL;
        if (s->n_files == 0)
                return NULL;

        key.path = (char *) url_path;
        return bsearch(&key, s->files, s->n_files, sizeof *s->files, static_file_compare);
}

const StaticFile *static_files_find_name(const StaticFiles *s, const char *name) {
        char path[STATIC_PATH_MAX + 1];
        int n;

        if (!name)
                return NULL;
        n = snprintf(path, sizeof path, STATIC_URL_PREFIX "%s", name);
        if (n < 0 || (size_t) n >= sizeof path)
                return NULL;
        return static_files_find(s, path);
}

size_t static_files_count(const StaticFiles *s) {
        return s ? s->n_files : 0;
}

size_t static_files_total_size(const StaticFiles *s) {
        return s ? s->total_size : 0;
}

StaticFiles *static_files_free(StaticFiles *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_files; i++)
                static_file_done(&s->files[i]);
        free(s->files);
        return mfree(s);
}

/* One asynchronous load, shared by the worker thread and the loop: the last
 * of the two to let go frees it (and a result nobody took). */
typedef struct LoadJob {
        unsigned n_ref;                 /* atomic */
        int event_fd;
        char *root;
        StaticFilesLoadHandler cb;
        void *userdata;

        /* Written by the worker before it signals event_fd. */
        StaticFiles *result;
        int error;
        char *bad_path;
} LoadJob;

static void load_job_unref(LoadJob *j) {
        if (!j || __atomic_sub_fetch(&j->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        safe_close(j->event_fd);
        static_files_free(j->result);
        free(j->bad_path);
        free(j->root);
        free(j);
}

static void on_load_job_source_destroy(void *userdata) {
        load_job_unref(userdata);
}

static void *load_job_thread(void *userdata) {
        LoadJob *j = userdata;
        uint64_t one = 1;

        j->error = static_files_load_full(&j->result, j->root, &j->bad_path);

        /* An eventfd write cannot block or fail short of a counter overflow. */
        (void) !write(j->event_fd, &one, sizeof one);
        load_job_unref(j);
        return NULL;
}

static int on_load_job_done(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        LoadJob *j = userdata;
        StaticFiles *loaded;
        uint64_t value;
        int error;

        if (read(fd, &value, sizeof value) < 0 && errno == EAGAIN)
                return 0;       /* spurious wakeup: the worker has not finished */

        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        loaded = TAKE_PTR(j->result);
        error = j->error;
        if (error < 0 && j->bad_path)
                log_error_errno(error, "Failed to load %s from web root %s: %m", j->bad_path, j->root);

        /* Gives the loop's reference up; sd-event frees the source (and the
         * destroy callback drops the job) once this callback has returned. */
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        (void) sd_event_source_set_floating(source, false);

        j->cb(error < 0 ? static_files_free(loaded) : loaded, error < 0 ? error : 0, j->userdata);
        return 0;
}

int static_files_load_async(sd_event *e, const char *root, StaticFilesLoadHandler cb, void *userdata) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *source = NULL;
        sigset_t all, saved;
        pthread_attr_t attr;
        pthread_t thread;
        LoadJob *j;
        int r;

        if (!e || !root || !cb)
                return -EINVAL;

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (LoadJob) { .n_ref = 1, .cb = cb, .userdata = userdata };
        j->root = strdup(root);
        j->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!j->root || j->event_fd < 0) {
                r = j->root ? -errno : -ENOMEM;
                load_job_unref(j);
                return r;
        }

        r = sd_event_add_io(e, &source, j->event_fd, EPOLLIN, on_load_job_done, j);
        if (r < 0) {
                load_job_unref(j);
                return r;
        }
        /* From here on the source's destroy callback owns the first reference. */
        (void) sd_event_source_set_destroy_callback(source, on_load_job_source_destroy);
        (void) sd_event_source_set_description(source, "static-files-load");

        /* Floating: the loop owns the source, so a loop freed before the
         * worker finishes takes the source (and its job reference) with it. */
        r = sd_event_source_set_floating(source, true);
        if (r < 0)
                return r;

        __atomic_add_fetch(&j->n_ref, 1, __ATOMIC_RELAXED);

        /* The worker must never take a signal meant for the loop's signalfd
         * (SIGTERM's default action would kill the daemon). */
        sigfillset(&all);
        r = pthread_attr_init(&attr);
        if (r != 0) {
                load_job_unref(j);
                (void) sd_event_source_set_floating(source, false);
                return -r;
        }
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        (void) pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = pthread_create(&thread, &attr, load_job_thread, j);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        (void) pthread_attr_destroy(&attr);
        if (r != 0) {
                load_job_unref(j);
                /* Takes the loop's reference back, so our cleanup frees the source. */
                (void) sd_event_source_set_floating(source, false);
                return -r;
        }

        return 0;
}
