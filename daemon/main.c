/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* multichatd: options and config, logging, build the Manager, run the loop. */

#include <errno.h>
#include <stdlib.h>

#include "config.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "manager.h"

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        Config *config = NULL;
        bool exit_now = false;
        int r;

        log_setup("multichatd");

        r = config_load(&config, argc, argv, "multichatd", &exit_now);
        if (r < 0)
                return EXIT_FAILURE;
        if (exit_now)
                return EXIT_SUCCESS;
        log_set_max_level(config->log_level);

        r = manager_new(&m, config, argc, argv);
        if (r < 0)
                return r == -ENOKEY ? EXIT_REDIS_CREDENTIALS : EXIT_FAILURE;
        r = manager_start(m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_run(m);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                return EXIT_FAILURE;
        }
        return r;
}
