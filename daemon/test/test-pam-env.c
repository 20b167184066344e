/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The users and PAM stack of tests/lib/pamenv.py for a multichat-auth the test spawns: pam_matrix + nss_wrapper. */

#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test/test-pam-env.h"
#include "test/test.h"

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_TRUE(fclose(f) == 0);
}

static bool find_one(const char *pattern, char *buf, size_t size) {
        glob_t g = {};
        bool found = false;

        if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
                snprintf(buf, size, "%s", g.gl_pathv[0]);
                found = true;
        }
        globfree(&g);
        return found;
}

/* The ASan runtime this test runs with, which must come first in the
 * helper's LD_PRELOAD (FACTS.md); "" without ASan. */
static void asan_runtime(char *buf, size_t size) {
        char line[1024];
        FILE *f;

        buf[0] = 0;
#if defined(__SANITIZE_ADDRESS__)
        f = fopen("/proc/self/maps", "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof line, f)) {
                char *p = strchr(line, '/');

                if (p && strstr(p, "/libasan.so")) {
                        p[strcspn(p, "\n")] = 0;
                        snprintf(buf, size, "%s", p);
                        break;
                }
        }
        fclose(f);
#else
        (void) line;
        (void) f;
#endif
}

int test_pam_env_setup(const char *dir, const char *extra_users, const char *extra_groups) {
        char matrix[512], nss[512], asan[512], preload[1100], path[512], text[2400];

        if (!find_one("/usr/lib/*/pam_wrapper/pam_matrix.so", matrix, sizeof matrix) &&
            !find_one("/usr/lib*/pam_wrapper/pam_matrix.so", matrix, sizeof matrix))
                return -ENOENT;
        if (!find_one("/usr/lib/*/libnss_wrapper.so", nss, sizeof nss) &&
            !find_one("/usr/lib*/libnss_wrapper.so", nss, sizeof nss))
                return -ENOENT;

        snprintf(text, sizeof text,
                 "alice:x:1001:1001:alice:/home/alice:/bin/false\n"
                 "bob:x:1002:1002:bob:/home/bob:/bin/false\n"
                 "root:x:0:0:root:/root:/bin/false\n"
                 "%s", extra_users ?: "");
        write_file(dir, "passwd", text);
        snprintf(text, sizeof text,
                 "alice:x:1001:\n"
                 "bob:x:1002:\n"
                 "root:x:0:\n"
                 "multichat-staff:x:2000:alice\n"
                 "multichat-admin:x:2001:\n"
                 "%s", extra_groups ?: "");
        write_file(dir, "group", text);
        write_file(dir, "passdb",
                   "alice:" TEST_ALICE_PASSWORD ":multichat\n"
                   "bob:" TEST_BOB_PASSWORD ":multichat\n"
                   "root:root-pw:multichat\n");
        snprintf(path, sizeof path, "%s/pam.d", dir);
        ASSERT_TRUE(mkdir(path, 0755) == 0);
        snprintf(text, sizeof text, "auth required %s passdb=%s/passdb\naccount required %s passdb=%s/passdb\n",
                 matrix, dir, matrix, dir);
        write_file(path, "multichat", text);
        write_file(path, "other",
                   "auth required pam_deny.so\naccount required pam_deny.so\n"
                   "password required pam_deny.so\nsession required pam_deny.so\n");

        /* Inherited by what the test spawns from now on. */
        asan_runtime(asan, sizeof asan);
        snprintf(preload, sizeof preload, "%s%s%s", asan, asan[0] ? " " : "", nss);
        ASSERT_OK(setenv("LD_PRELOAD", preload, 1));
        ASSERT_OK(setenv("MULTICHAT_PAM_CONFDIR", path, 1));
        snprintf(path, sizeof path, "%s/passwd", dir);
        ASSERT_OK(setenv("NSS_WRAPPER_PASSWD", path, 1));
        snprintf(path, sizeof path, "%s/group", dir);
        ASSERT_OK(setenv("NSS_WRAPPER_GROUP", path, 1));
        return 0;
}

int test_auth_helper_path(char *buf, size_t size) {
        const char *build = getenv("MULTICHAT_BUILD_DIR");

        if ((size_t) snprintf(buf, size, "%s/daemon/multichat-auth", build ?: ".") >= size)
                return -ENAMETOOLONG;
        return access(buf, X_OK) < 0 ? -errno : 0;
}
