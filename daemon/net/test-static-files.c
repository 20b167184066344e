/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the in-memory web root: lookup, types, ETags, limits, traversal, symlinks, async reload. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "basic/macro.h"
#include "net/static-files.h"
#include "test/test.h"

static char *tmp_root;          /* <tmp>: holds "secret" and the web roots */

static char *path_join(const char *a, const char *b) {
        char *p;
        ASSERT_TRUE(asprintf(&p, "%s/%s", a, b) >= 0);
        return p;
}

static void write_file(const char *dir, const char *name, const void *data, size_t size) {
        _cleanup_free_ char *p = path_join(dir, name);
        int fd;

        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_INT_EQ(write(fd, data, size), (ssize_t) size);
        ASSERT_OK(close(fd));
}

static void write_string(const char *dir, const char *name, const char *s) {
        write_file(dir, name, s, strlen(s));
}

static void write_zeros(const char *dir, const char *name, size_t size) {
        _cleanup_free_ char *p = path_join(dir, name);

        write_file(dir, name, "", 0);
        ASSERT_OK(truncate(p, (off_t) size));
}

static void make_dir(const char *dir, const char *name) {
        _cleanup_free_ char *p = path_join(dir, name);
        ASSERT_OK(mkdir(p, 0755));
}

static char *new_root(const char *name) {
        char *p = path_join(tmp_root, name);
        ASSERT_OK(mkdir(p, 0755));
        return p;
}

static void rm_rf(const char *path) {
        _cleanup_free_ char *cmd = NULL;
        ASSERT_TRUE(asprintf(&cmd, "rm -rf '%s'", path) >= 0);
        ASSERT_INT_EQ(system(cmd), 0);
}

/* Symlinks inside the root are only followed with openat2() (Linux 5.6+). */
static bool have_openat2(void) {
        struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_DIRECTORY };
        long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);

        if (fd < 0)
                return errno != ENOSYS;
        close((int) fd);
        return true;
}

/* The tree most tests use: real page files, odd ones, and escape attempts. */
static char *build_tree(void) {
        char *root = new_root("web");
        _cleanup_free_ char *fifo = path_join(root, "pipe.txt");

        write_string(tmp_root, "secret", "top secret\n");
        write_string(root, "index.html", "<!doctype html><title>chat</title>\n");
        write_string(root, "login.html", "<!doctype html><title>login</title>\n");
        write_string(root, "chat.js", "export const x = 1;\n");
        write_string(root, "render.mjs", "export {};\n");
        write_string(root, "style.css", "body{}\n");
        write_string(root, "favicon.svg", "<svg/>");
        write_string(root, "a.png", "\x89PNG");
        write_string(root, "b.ico", "ico");
        write_string(root, "c.json", "{}");
        write_string(root, "d.woff2", "wOF2");
        write_string(root, "e.txt", "text");
        write_string(root, "UPPER.HTML", "<p>");
        write_string(root, "noext", "?");
        write_file(root, "weird.bin", "\x00\x01", 2);
        write_file(root, "empty.css", "", 0);
        write_string(root, ".hidden", "no");
        write_string(root, "bad name.txt", "unreachable");
        write_string(root, "pct%41.txt", "unreachable");
        make_dir(root, ".git");
        write_string(root, ".git/config", "no");
        make_dir(root, "sub");
        make_dir(root, "sub/deep");
        write_string(root, "sub/deep/x.json", "[1]");
        write_string(root, "sub/.env", "no");

        /* Escapes: relative, absolute, via a directory; plus links that stay inside. */
        {
                _cleanup_free_ char *l0 = path_join(root, "escape.txt");
                _cleanup_free_ char *l = path_join(root, "abs.txt");
                _cleanup_free_ char *sec = path_join(tmp_root, "secret");
                _cleanup_free_ char *l2 = path_join(root, "inside.js");
                _cleanup_free_ char *l3 = path_join(root, "dirlink");
                _cleanup_free_ char *l4 = path_join(root, "sub/up.js");
                _cleanup_free_ char *l5 = path_join(root, "sub/out.txt");
                _cleanup_free_ char *l6 = path_join(root, "dangling.js");
                ASSERT_OK(symlink("../secret", l0));
                ASSERT_OK(symlink(sec, l));
                ASSERT_OK(symlink("chat.js", l2));
                ASSERT_OK(symlink("sub", l3));
                ASSERT_OK(symlink("../chat.js", l4));
                ASSERT_OK(symlink("../../secret", l5));
                ASSERT_OK(symlink("nowhere.js", l6));
        }
        ASSERT_OK(mkfifo(fifo, 0644));
        return root;
}

static void test_lookup(const char *root) {
        _cleanup_(static_files_freep) StaticFiles *s = NULL;
        const StaticFile *f;

        ASSERT_OK(static_files_load(&s, root));

        f = static_files_find(s, "/static/chat.js");
        ASSERT_NOT_NULL(f);
        ASSERT_STREQ(f->path, "/static/chat.js");
        ASSERT_INT_EQ(f->size, strlen("export const x = 1;\n"));
        ASSERT_TRUE(memcmp(f->data, "export const x = 1;\n", f->size) == 0);
        ASSERT_INT_EQ(f->data[f->size], 0);
        ASSERT_STREQ(f->content_type, "text/javascript; charset=utf-8");

        f = static_files_find_name(s, "index.html");
        ASSERT_NOT_NULL(f);
        ASSERT_STREQ(f->path, "/static/index.html");
        ASSERT_STREQ(f->content_type, "text/html; charset=utf-8");
        ASSERT_NOT_NULL(static_files_find_name(s, "login.html"));
        ASSERT_NULL(static_files_find_name(s, "nope.html"));
        ASSERT_NULL(static_files_find_name(s, "../secret"));

        f = static_files_find(s, "/static/sub/deep/x.json");
        ASSERT_NOT_NULL(f);
        ASSERT_INT_EQ(f->size, 3);

        f = static_files_find(s, "/static/empty.css");
        ASSERT_NOT_NULL(f);
        ASSERT_INT_EQ(f->size, 0);

        /* Exact match only, and no prefix-less paths or queries. */
        ASSERT_NULL(static_files_find(s, "/static/chat"));
        ASSERT_NULL(static_files_find(s, "/static/chat.js?v=1"));
        ASSERT_NULL(static_files_find(s, "static/chat.js"));
        ASSERT_NULL(static_files_find(s, "/chat.js"));
        ASSERT_NULL(static_files_find(s, "/static/"));
        ASSERT_NULL(static_files_find(s, "/static/sub"));
        ASSERT_NULL(static_files_find(s, ""));
        ASSERT_NULL(static_files_find(s, NULL));
        ASSERT_NULL(static_files_find(NULL, "/static/chat.js"));

        /* Skipped: dotfiles, dot-directories, unservable names, FIFOs. */
        ASSERT_NULL(static_files_find(s, "/static/.hidden"));
        ASSERT_NULL(static_files_find(s, "/static/.git/config"));
        ASSERT_NULL(static_files_find(s, "/static/sub/.env"));
        ASSERT_NULL(static_files_find(s, "/static/pipe.txt"));
        ASSERT_NULL(static_files_find(s, "/static/pct%41.txt"));
        ASSERT_NULL(static_files_find(s, "/static/pctA.txt"));

        /* Symlinks: those leaving the root are ignored, those inside it served. */
        ASSERT_NULL(static_files_find(s, "/static/escape.txt"));
        ASSERT_NULL(static_files_find(s, "/static/abs.txt"));
        ASSERT_NULL(static_files_find(s, "/static/sub/out.txt"));
        ASSERT_NULL(static_files_find(s, "/static/dirlink/deep/x.json"));
        ASSERT_NULL(static_files_find(s, "/static/dangling.js"));
        if (have_openat2()) {
                f = static_files_find(s, "/static/inside.js");
                ASSERT_NOT_NULL(f);
                ASSERT_INT_EQ(f->size, strlen("export const x = 1;\n"));
                ASSERT_NOT_NULL(static_files_find(s, "/static/sub/up.js"));
        }
        /* 16 regular files + inside.js + sub/up.js */
        ASSERT_INT_EQ(static_files_count(s), have_openat2() ? 18 : 16);
}

static void test_traversal(const char *root) {
        _cleanup_(static_files_freep) StaticFiles *s = NULL;
        _cleanup_free_ char *outside = NULL;

        ASSERT_OK(static_files_load(&s, root));
        ASSERT_NOT_NULL(static_files_find(s, "/static/sub/deep/x.json"));

        ASSERT_NULL(static_files_find(s, "/static/../secret"));
        ASSERT_NULL(static_files_find(s, "/static/%2e%2e/x"));
        ASSERT_NULL(static_files_find(s, "/static/%2e%2e/secret"));
        ASSERT_NULL(static_files_find(s, "/static//a"));
        ASSERT_NULL(static_files_find(s, "/static//chat.js"));
        ASSERT_NULL(static_files_find(s, "//static/chat.js"));
        ASSERT_NULL(static_files_find(s, "/static/sub/../chat.js"));
        ASSERT_NULL(static_files_find(s, "/static/sub/deep/../../chat.js"));
        ASSERT_NULL(static_files_find(s, "/static\\chat.js"));
        ASSERT_NULL(static_files_find(s, "/static/sub\\deep/x.json"));
        ASSERT_NULL(static_files_find(s, "/static/chat%2ejs"));
        ASSERT_NULL(static_files_find(s, "/static/./chat.js"));
        ASSERT_NULL(static_files_find(s, "/static/chat.js\t"));
        ASSERT_NULL(static_files_find(s, "/static/chat.js "));
        ASSERT_NULL(static_files_find(s, "/static/ch\x7f" "at.js"));
        ASSERT_NULL(static_files_find(s, "/static/\xc3\xa9.js"));

        /* A path longer than the bound is refused before any comparison. */
        outside = malloc(STATIC_PATH_MAX + 16);
        ASSERT_NOT_NULL(outside);
        memset(outside, 'a', STATIC_PATH_MAX + 15);
        memcpy(outside, "/static/", 8);
        outside[STATIC_PATH_MAX + 15] = 0;
        ASSERT_NULL(static_files_find(s, outside));
}

static void test_content_types(const char *root) {
        _cleanup_(static_files_freep) StaticFiles *s = NULL;
        static const struct { const char *path, *type; } table[] = {
                { "/static/index.html", "text/html; charset=utf-8" },
                { "/static/UPPER.HTML", "text/html; charset=utf-8" },
                { "/static/chat.js", "text/javascript; charset=utf-8" },
                { "/static/render.mjs", "text/javascript; charset=utf-8" },
                { "/static/style.css", "text/css; charset=utf-8" },
                { "/static/favicon.svg", "image/svg+xml" },
                { "/static/a.png", "image/png" },
                { "/static/b.ico", "image/vnd.microsoft.icon" },
                { "/static/c.json", "application/json" },
                { "/static/sub/deep/x.json", "application/json" },
                { "/static/d.woff2", "font/woff2" },
                { "/static/e.txt", "text/plain; charset=utf-8" },
                { "/static/noext", "application/octet-stream" },
                { "/static/weird.bin", "application/octet-stream" },
        };

        ASSERT_OK(static_files_load(&s, root));
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const StaticFile *f = static_files_find(s, table[i].path);
                ASSERT_NOT_NULL(f);
                ASSERT_STREQ(f->content_type, table[i].type);
        }
        /* Binary content with NUL bytes is kept whole. */
        ASSERT_INT_EQ(static_files_find(s, "/static/weird.bin")->size, 2);
}

static void test_etag(const char *root) {
        _cleanup_(static_files_freep) StaticFiles *a = NULL, *b = NULL, *c = NULL;
        const StaticFile *fa, *fb, *fc, *other;
        char saved[24];

        ASSERT_OK(static_files_load(&a, root));
        ASSERT_OK(static_files_load(&b, root));
        fa = static_files_find(a, "/static/chat.js");
        fb = static_files_find(b, "/static/chat.js");
        ASSERT_NOT_NULL(fa);
        ASSERT_NOT_NULL(fb);

        /* Strong ETag: a quoted, fixed-width hex hash, no W/ prefix. */
        ASSERT_INT_EQ(strlen(fa->etag), 18);
        ASSERT_TRUE(fa->etag[0] == '"' && fa->etag[17] == '"');
        for (size_t i = 1; i < 17; i++)
                ASSERT_TRUE(strchr("0123456789abcdef", fa->etag[i]));
        ASSERT_STREQ(fa->etag, fb->etag);       /* stable across loads */

        other = static_files_find(a, "/static/style.css");
        ASSERT_TRUE(strcmp(other->etag, fa->etag) != 0);
        /* Same content under another name: same tag (it hashes content only). */
        if (have_openat2())
                ASSERT_STREQ(static_files_find(a, "/static/inside.js")->etag, fa->etag);

        memcpy(saved, fa->etag, sizeof saved);
        write_string(root, "chat.js", "export const x = 2;\n");
        ASSERT_OK(static_files_load(&c, root));
        fc = static_files_find(c, "/static/chat.js");
        ASSERT_TRUE(strcmp(fc->etag, saved) != 0);
        write_string(root, "chat.js", "export const x = 1;\n");
}

static void test_limits(void) {
        _cleanup_(static_files_freep) StaticFiles *s = NULL;
        _cleanup_free_ char *root = new_root("limits"), *bad = NULL;
        char name[64];

        /* Exactly the per-file maximum is fine. */
        write_zeros(root, "max.bin", STATIC_FILE_SIZE_MAX);
        ASSERT_OK(static_files_load_full(&s, root, &bad));
        ASSERT_NULL(bad);
        ASSERT_INT_EQ(static_files_find(s, "/static/max.bin")->size, STATIC_FILE_SIZE_MAX);
        s = static_files_free(s);

        /* One byte over: an error naming the file. */
        write_zeros(root, "big.bin", STATIC_FILE_SIZE_MAX + 1);
        ASSERT_ERROR(static_files_load_full(&s, root, &bad), EFBIG);
        ASSERT_NULL(s);
        ASSERT_STREQ(bad, "/static/big.bin");
        bad = mfree(bad);
        ASSERT_ERROR(static_files_load(&s, root), EFBIG);     /* logs, same result */
        write_zeros(root, "big.bin", 1);

        /* Four maximal files make exactly the total maximum; a fifth byte is over. */
        write_zeros(root, "max2.bin", STATIC_FILE_SIZE_MAX);
        write_zeros(root, "max3.bin", STATIC_FILE_SIZE_MAX);
        write_zeros(root, "max4.bin", STATIC_FILE_SIZE_MAX - 1);
        ASSERT_OK(static_files_load_full(&s, root, &bad));
        ASSERT_INT_EQ(static_files_total_size(s), STATIC_FILES_TOTAL_MAX);
        s = static_files_free(s);
        write_zeros(root, "max4.bin", STATIC_FILE_SIZE_MAX);
        ASSERT_ERROR(static_files_load_full(&s, root, &bad), EFBIG);
        ASSERT_NULL(s);
        ASSERT_NOT_NULL(bad);
        ASSERT_TRUE(strncmp(bad, "/static/", 8) == 0);
        bad = mfree(bad);
        rm_rf(root);

        /* File count. */
        ASSERT_OK(mkdir(root, 0755));
        for (unsigned i = 0; i < STATIC_FILES_MAX; i++) {
                snprintf(name, sizeof name, "f%u.txt", i);
                write_string(root, name, "x");
        }
        ASSERT_OK(static_files_load_full(&s, root, &bad));
        ASSERT_INT_EQ(static_files_count(s), STATIC_FILES_MAX);
        ASSERT_NOT_NULL(static_files_find(s, "/static/f0.txt"));
        ASSERT_NOT_NULL(static_files_find(s, "/static/f1023.txt"));
        ASSERT_NULL(static_files_find(s, "/static/f1024.txt"));
        s = static_files_free(s);
        write_string(root, "one-more.txt", "x");
        ASSERT_ERROR(static_files_load_full(&s, root, &bad), E2BIG);
        ASSERT_NOT_NULL(bad);
        bad = mfree(bad);
        rm_rf(root);

        /* Depth. */
        ASSERT_OK(mkdir(root, 0755));
        {
                _cleanup_free_ char *dir = strdup(root);
                for (unsigned i = 0; i <= STATIC_FILES_DEPTH_MAX; i++) {
                        char *next = path_join(dir, "d");
                        ASSERT_OK(mkdir(next, 0755));
                        free(dir);
                        dir = next;
                }
                write_string(dir, "deep.txt", "x");
        }
        ASSERT_ERROR(static_files_load_full(&s, root, &bad), ELOOP);
        ASSERT_NOT_NULL(bad);
        bad = mfree(bad);
        rm_rf(root);

        /* A missing root is an error, no file at fault. */
        ASSERT_ERROR(static_files_load_full(&s, root, &bad), ENOENT);
        ASSERT_NULL(bad);
        ASSERT_ERROR(static_files_load(&s, "/dev/null"), ENOTDIR);
}

typedef struct AsyncResult {
        bool called;
        int error;
        StaticFiles *loaded;
        pthread_t thread;
} AsyncResult;

static void on_loaded(StaticFiles *loaded, int error, void *userdata) {
        AsyncResult *res = userdata;

        ASSERT_FALSE(res->called);
        res->called = true;
        res->error = error;
        res->loaded = loaded;
        res->thread = pthread_self();
}

static void run_until_called(sd_event *e, AsyncResult *res) {
        for (unsigned i = 0; i < 1000 && !res->called; i++)
                ASSERT_OK(sd_event_run(e, 10 * 1000));
        ASSERT_TRUE(res->called);
}

static void test_async(const char *root) {
        _cleanup_(static_files_freep) StaticFiles *sync = NULL;
        sd_event *e = NULL;
        AsyncResult res = {};
        _cleanup_free_ char *bad_root = NULL, *big_root = NULL;

        ASSERT_OK(sd_event_new(&e));

        /* Success: delivered on the loop's thread, equal to a sync load. */
        ASSERT_OK(static_files_load_async(e, root, on_loaded, &res));
        ASSERT_FALSE(res.called);       /* never synchronously */
        run_until_called(e, &res);
        ASSERT_INT_EQ(res.error, 0);
        ASSERT_NOT_NULL(res.loaded);
        ASSERT_TRUE(pthread_equal(res.thread, pthread_self()));
        ASSERT_OK(static_files_load(&sync, root));
        ASSERT_INT_EQ(static_files_count(res.loaded), static_files_count(sync));
        ASSERT_STREQ(static_files_find(res.loaded, "/static/chat.js")->etag,
                     static_files_find(sync, "/static/chat.js")->etag);
        res.loaded = static_files_free(res.loaded);

        /* The source is gone after delivery: the loop has nothing left. */
        ASSERT_INT_EQ(sd_event_run(e, 50 * 1000), 0);

        /* Failure: NULL with the errno. */
        res = (AsyncResult) {};
        bad_root = path_join(tmp_root, "does-not-exist");
        ASSERT_OK(static_files_load_async(e, bad_root, on_loaded, &res));
        run_until_called(e, &res);
        ASSERT_ERROR(res.error, ENOENT);
        ASSERT_NULL(res.loaded);

        /* Failure naming a file (logged) is delivered the same way. */
        res = (AsyncResult) {};
        big_root = new_root("async-big");
        write_zeros(big_root, "huge.bin", STATIC_FILE_SIZE_MAX + 1);
        ASSERT_OK(static_files_load_async(e, big_root, on_loaded, &res));
        run_until_called(e, &res);
        ASSERT_ERROR(res.error, EFBIG);
        ASSERT_NULL(res.loaded);

        /* Several in flight at once each arrive exactly once. */
        {
                AsyncResult many[4] = {};
                for (size_t i = 0; i < ELEMENTSOF(many); i++)
                        ASSERT_OK(static_files_load_async(e, root, on_loaded, &many[i]));
                for (size_t i = 0; i < ELEMENTSOF(many); i++) {
                        run_until_called(e, &many[i]);
                        ASSERT_INT_EQ(many[i].error, 0);
                        static_files_free(many[i].loaded);
                }
        }

        /* The loop freed before the worker finishes: no callback, no leak
         * (the worker drops the last reference; ASan checks). */
        res = (AsyncResult) {};
        ASSERT_OK(static_files_load_async(e, root, on_loaded, &res));
        e = sd_event_unref(e);
        usleep(300 * 1000);
        ASSERT_FALSE(res.called);

        ASSERT_ERROR(static_files_load_async(NULL, root, on_loaded, &res), EINVAL);
}

int main(void) {
        char template[] = "/tmp/test-static-files-XXXXXX";
        _cleanup_free_ char *root = NULL;

        tmp_root = mkdtemp(template);
        ASSERT_NOT_NULL(tmp_root);

        root = build_tree();
        test_lookup(root);
        test_traversal(root);
        test_content_types(root);
        test_etag(root);
        test_limits();
        test_async(root);

        rm_rf(tmp_root);
        return 0;
}
