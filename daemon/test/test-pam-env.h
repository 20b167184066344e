/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The users and PAM stack of tests/lib/pamenv.py for a multichat-auth the test spawns: pam_matrix + nss_wrapper. */
#pragma once

/* alice (uid 1001, in multichat-staff, password "alice-pw"), bob (1002,
 * "bob-pw"), root (0, "root-pw"); groups multichat-staff (2000) and
 * multichat-admin (2001). */
#define TEST_ALICE_PASSWORD "alice-pw"
#define TEST_BOB_PASSWORD "bob-pw"

/* Writes passwd, group, passdb and a PAM service directory into dir and
 * sets the environment a helper spawned afterwards needs (nss_wrapper
 * preloaded, after the ASan runtime when the test has one; the service
 * directory through $MULTICHAT_PAM_CONFDIR). extra_users, extra_groups:
 * lines added to the passwd and group files, or NULL. Call it after starting other children (Redis),
 * which should not inherit that. -ENOENT when pam_matrix or nss_wrapper is
 * not installed (Debian: libpam-wrapper, libnss-wrapper). */
int test_pam_env_setup(const char *dir, const char *extra_users, const char *extra_groups);

/* The multichat-auth of this build ($MULTICHAT_BUILD_DIR), into buf. */
int test_auth_helper_path(char *buf, size_t size);
