/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replays a fuzz target's corpus and regression inputs once, for builds without libFuzzer. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "basic/macro.h"

/* Larger than any input kept in the tree; a bigger file is a mistake. */
#define INPUT_MAX (4 * 1024 * 1024)

static int read_input(int dirfd, const char *name, uint8_t **ret, size_t *ret_size) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t done = 0;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return 0;
        if (st.st_size > INPUT_MAX)
                return -EFBIG;

        /* One byte more, so that an empty input still has a buffer. */
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = done;
        return 1;
}

static int run_dir(const char *path, unsigned *n_run) {
        struct dirent **names = NULL;
        _cleanup_(closep) int dirfd = -EBADF;
        int n, r = 0;

        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        n = scandir(path, &names, NULL, alphasort);
        if (n < 0)
                return -errno;

        for (int i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *data = NULL;
                size_t size = 0;
                int k;

                if (names[i]->d_name[0] == '.' || r < 0)
                        goto next;
                k = read_input(dirfd, names[i]->d_name, &data, &size);
                if (k < 0) {
                        fprintf(stderr, "%s/%s: %s\n", path, names[i]->d_name, strerror(-k));
                        r = k;
                } else if (k > 0) {
                        /* Named first, so a crash shows which input did it. */
                        fprintf(stderr, "%s/%s\n", path, names[i]->d_name);
                        (void) LLVMFuzzerTestOneInput(data, size);
                        (*n_run)++;
                }
        next:
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned n_run = 0;
        int r = 0;

        (void) LLVMFuzzerInitialize(&argc, &argv);

        for (int i = 1; i < argc; i++) {
                int k = run_dir(argv[i], &n_run);
                if (k < 0)
                        r = k;
        }
        fprintf(stderr, "%u inputs run\n", n_run);
        if (n_run == 0) {
                fprintf(stderr, "no input found: the corpus directories are missing or empty\n");
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
