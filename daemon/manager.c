/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one daemon context: event loop, web, Redis, rooms, bus; signals, notify, shutdown. */

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <systemd/sd-daemon.h>

#include "admin.h"
#include "auth-client.h"
#include "bus.h"
#include "chat.h"
#include "config.h"
#include "frame.h"
#include "listen.h"
#include "log.h"
#include "login-limit.h"
#include "loop-uv.h"
#include "macro.h"
#include "manager.h"
#include "redis.h"
#include "rooms.h"
#include "static-files.h"
#include "strv.h"
#include "web.h"
#include "ws.h"

#define STATUS_INTERVAL_USEC (5 * 1000000ULL)
#define HEARTBEAT_INTERVAL_USEC (10 * 1000000ULL)
/* Clients get this long to take their close frames before we exit anyway. */
#define SHUTDOWN_TIMEOUT_USEC (3 * 1000000ULL)

static void on_accept(int fd, const char *peer, void *userdata) {
        Manager *m = userdata;
        int r;

        r = web_adopt(m->web, fd);
        if (r < 0)
                log_warning_errno(r, "Failed to take over the connection from %s: %m", peer);
}

static void on_redis_state(Redis *r, bool connected, void *userdata) {
        Manager *m = userdata;

        if (connected) {
                log_struct(LOG_INFO, 0, MESSAGE_ID_REDIS_BACK, NULL, "Connected to Redis.");
                chat_on_redis_connected(m);
        } else {
                log_struct(LOG_WARNING, 0, MESSAGE_ID_REDIS_LOST, NULL,
                           "Lost Redis (%s); reconnecting.", redis_last_error(r));
                chat_on_redis_disconnected(m);
        }
        if (m->bus)
                (void) bus_emit_manager_changed(m->bus, BUS_MANAGER_REDIS_CONNECTED);
}

static void on_redis_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        chat_on_redis_message(userdata, channel, data, len);
}

/* The bus name is taken once the room list is loaded: D-Bus callers (and
 * D-Bus activation) then never see an empty list that is merely not
 * loaded yet. */
static void manager_start_bus(Manager *m) {
        int r;

        if (m->bus_started || !m->redis_ready)
                return;
        m->bus_started = true;
        r = bus_start(m->bus);
        if (r < 0) {
                log_error_errno(r, "Failed to connect to D-Bus (%s): %m", m->config_boot->bus);
                manager_stop(m, EXIT_FAILURE);
        }
}

void manager_update_notify(Manager *m) {
        char status[256];

        if (m->stopping)
                return;
        manager_start_bus(m);
        if (!m->redis_ready)
                snprintf(status, sizeof status, "Waiting for Redis (%s); %u connections.",
                         redis_last_error(m->redis)[0] ? redis_last_error(m->redis) : "connecting",
                         m->n_conns);
        else if (!m->bus_ready)
                snprintf(status, sizeof status, "Waiting for the D-Bus name; %u connections.", m->n_conns);
        else
                snprintf(status, sizeof status, "Serving %u connections in %zu rooms; %llu messages relayed.",
                         m->n_conns, room_registry_count(m->rooms), (unsigned long long) m->messages_relayed);

        if (!m->ready_sent && m->redis_ready && m->bus_ready) {
                m->ready_sent = true;
                /* Connections made before now waited in the kernel's
                 * backlog (socket activation hands them over that way). */
                (void) listener_set_accepting(m->listener, true);
                log_info("Ready.");
                (void) sd_notifyf(false, "READY=1\nSTATUS=%s", status);
                return;
        }
        (void) sd_notifyf(false, "STATUS=%s", status);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (usec - m->last_heartbeat_usec >= HEARTBEAT_INTERVAL_USEC) {
                m->last_heartbeat_usec = usec;
                chat_heartbeat(m);
        }
        manager_update_notify(m);
        (void) sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A sweep over all connections: cheap next to their traffic (tens of ns
 * each), and no per-connection timers to keep sorted. Often enough that
 * nobody is pinged or dropped much later than keepalive says. */
static uint64_t keepalive_sweep_usec(const Manager *m) {
        return CLAMP(m->config->keepalive_usec / 4, 250 * 1000ULL, STATUS_INTERVAL_USEC);
}

static int on_keepalive_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        ws_keepalive(m, usec);
        (void) sd_event_source_set_time(s, usec + keepalive_sweep_usec(m));
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_write_scheduled(sd_event_source *s, void *userdata) {
        ws_write_scheduled(userdata);
        return 0;
}

static void manager_finish_stop(Manager *m) {
        (void) sd_event_exit(m->event, m->exit_code);
}

static void on_final_ping(Redis *r, const redisReply *reply, void *userdata) {
        manager_finish_stop(userdata);
}

/* Every connection is gone: their leaves are queued for Redis; exit once
 * Redis has answered a PING sent after them (replies come in order). */
static void manager_maybe_exit(Manager *m) {
        if (!m->stopping || m->n_conns > 0 || web_peer_count(m->web) > 0 || m->exiting)
                return;
        m->exiting = true;
        chat_retire(m);
        if (redis_command(m->redis, on_final_ping, m, "PING") < 0)
                manager_finish_stop(m);
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("%u connections did not close in time; exiting anyway.", web_peer_count(m->web));
        manager_finish_stop(m);
        return 0;
}

void manager_stop(Manager *m, int exit_code) {
        if (m->stopping)
                return;
        m->stopping = true;
        m->exit_code = exit_code;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down.");
        log_info("Shutting down; closing %u WebSockets, %u connections in all.", m->n_conns,
                 web_peer_count(m->web));

        if (m->listener)
                (void) listener_set_accepting(m->listener, false);
        for (Conn *c = m->conns; c; c = c->next)
                ws_conn_close(c, 1001, "server shutting down");
        web_drain(m->web);
        (void) sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                          SHUTDOWN_TIMEOUT_USEC, 0, on_shutdown_timeout, m);
        manager_maybe_exit(m);
}

void manager_peer_removed(Manager *m) {
        manager_maybe_exit(m);
}

void manager_conn_added(Manager *m) {
        m->n_conns++;
        if (m->n_conns >= m->config->max_connections)
                (void) listener_set_accepting(m->listener, false);
        if (m->bus)
                (void) bus_emit_manager_changed(m->bus, BUS_MANAGER_CONNECTIONS);
}

void manager_conn_removed(Manager *m) {
        m->n_conns--;
        if (!m->stopping && m->ready_sent && m->n_conns < m->config->max_connections)
                (void) listener_set_accepting(m->listener, true);
        if (m->bus)
                (void) bus_emit_manager_changed(m->bus, BUS_MANAGER_CONNECTIONS);
        manager_maybe_exit(m);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_stop(userdata, EXIT_SUCCESS);
        return 0;
}

static void on_static_reloaded(StaticFiles *loaded, int error, void *userdata) {
        Manager *m = userdata;

        if (loaded) {
                static_files_free(m->static_files);
                m->static_files = loaded;
                log_info("Reloaded %zu web files.", static_files_count(loaded));
        } else
                log_error_errno(error, "Failed to reload the web root %s, keeping the old files: %m",
                                m->config->web_root);
        m->reloading = false;
        (void) sd_notify(false, "READY=1");
        manager_update_notify(m);
}

static void warn_unchanged(const char *key, const char *was, const char *now) {
        if (!streq_ptr(was, now))
                log_notice("Setting '%s' changed; it takes effect on restart.", key);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        Config *c = NULL;
        int r;

        if (m->reloading)
                return 0;
        (void) sd_notify(false, "RELOADING=1\nSTATUS=Reloading configuration.");
        r = config_load(&c, m->argc, m->argv, program_invocation_short_name, NULL);
        if (r < 0 || !c) {
                log_error("Configuration not reloaded; the old one stays in force.");
                (void) sd_notify(false, "READY=1");
                manager_update_notify(m);
                return 0;
        }
        warn_unchanged("redis", m->config_boot->redis, c->redis);
        warn_unchanged("bus", m->config_boot->bus, c->bus);
        warn_unchanged("pam-service", m->config_boot->pam_service, c->pam_service);
        log_set_max_level(c->log_level);
        if (m->config != m->config_boot)
                config_free(m->config);
        m->config = c;
        login_limiter_set_limit(m->login_limiter, c->login_attempts);
        if (!c->tls_certificate != !m->config_boot->tls_certificate)
                log_notice("Setting 'tls-certificate' turned on or off; it takes effect on restart.");
        r = web_reload_tls(m->web);
        if (r < 0)
                log_error_errno(r, "Failed to load the TLS certificate %s and key %s, keeping the ones in force: %m",
                                c->tls_certificate, c->tls_key);

        m->reloading = true;
        r = static_files_load_async(m->event, c->web_root, on_static_reloaded, m);
        if (r < 0)
                on_static_reloaded(NULL, r, m);
        return 0;
}

/* sd-event takes signals through signalfd, which needs them blocked;
 * SIGCHLD too, for the auth helper we may spawn. */
static int block_signals(void) {
        sigset_t ss;

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigaddset(&ss, SIGCHLD);
        return sigprocmask(SIG_BLOCK, &ss, NULL) < 0 ? -errno : 0;
}

static int make_daemon_id(char ret[static DAEMON_ID_LEN + 1]) {
        uint8_t b[DAEMON_ID_LEN / 2];

        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -errno;
        for (size_t i = 0; i < sizeof b; i++)
                sprintf(ret + 2 * i, "%02x", b[i]);
        return 0;
}

/* The helper beside our own binary wins: a build tree or a relocated
 * install then uses its own helper, not whatever is installed. */
static char *find_auth_helper(const Config *c) {
        char self[PATH_MAX], *slash, *path;
        ssize_t n;

        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                self[n] = 0;
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = 0;
                        if (asprintf(&path, "%s/multichat-auth", self) >= 0) {
                                if (access(path, X_OK) == 0)
                                        return path;
                                free(path);
                        }
                }
        }
        return strdup(c->auth_helper);
}

static int manager_setup_auth(Manager *m) {
        const Config *c = m->config_boot;
        _cleanup_free_ char *helper = NULL;
        AuthClientOptions o = {};
        char buf[64];

        if (c->auth_socket)
                o.socket_path = c->auth_socket;
        else {
                helper = find_auth_helper(c);
                if (!helper)
                        return -ENOMEM;
                snprintf(buf, sizeof buf, "--min-uid=%u", (unsigned) c->min_uid);
                if (strv_extend(&m->auth_helper_args, buf) < 0)
                        return -ENOMEM;
                snprintf(buf, sizeof buf, "--pam-service=%s", c->pam_service);
                if (strv_extend(&m->auth_helper_args, buf) < 0)
                        return -ENOMEM;
                snprintf(buf, sizeof buf, "--staff-group=%s", c->staff_group);
                if (strv_extend(&m->auth_helper_args, buf) < 0)
                        return -ENOMEM;
                o.helper_path = helper;
                o.helper_args = m->auth_helper_args;
        }
        return auth_client_new(&m->auth, m->event, &o);
}

int manager_new(Manager **ret, Config *config, int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        struct group *g;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->config = m->config_boot = config;
        m->argc = argc;
        m->argv = argv;

        r = make_daemon_id(m->daemon_id);
        if (r < 0)
                return log_error_errno(r, "Failed to make a daemon id: %m");

        /* Resolved once at start (off the loop): most admin checks then
         * need no NSS lookup at all. */
        g = getgrnam(config->admin_group);
        m->admin_gid = g ? g->gr_gid : (gid_t) -1;

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");
        (void) sd_event_set_watchdog(m->event, true);

        r = block_signals();
        if (r < 0)
                return log_error_errno(r, "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        r = static_files_load(&m->static_files, config->web_root);
        if (r < 0)
                return log_error_errno(r, "Failed to load the web root %s: %m", config->web_root);

        r = room_registry_new(&m->rooms);
        if (r >= 0)
                r = login_limiter_new(&m->login_limiter, config->login_attempts);
        if (r >= 0)
                r = frame_new_ping(&m->ping_frame);
        if (r < 0)
                return log_oom();

        r = sd_event_add_defer(m->event, &m->write_source, on_write_scheduled, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->write_source, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Failed to set up writing: %m");

        r = loop_uv_new(&m->uv, m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to set up libuv: %m");
        r = web_new(&m->web, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up libwebsockets (is libwebsockets-evlib-uv installed?): %m");

        r = redis_new(&m->redis, m->event, config->redis, on_redis_state, on_redis_message, m);
        if (r < 0)
                return log_error_errno(r, "Invalid Redis address '%s': %m", config->redis);

        r = manager_setup_auth(m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the auth helper: %m");

        r = bus_new(&m->bus, m->event, config->bus, &admin_bus_backend, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up D-Bus (%s): %m", config->bus);

        r = listener_new(&m->listener, m->event, on_accept, m);
        if (r < 0)
                return log_oom();

        *ret = TAKE_PTR(m);
        return 0;
}

int manager_start(Manager *m) {
        int r;

        r = listener_add_inherited(m->listener);
        if (r < 0)
                return log_error_errno(r, "Failed to take the sockets passed by systemd: %m");
        STRV_FOREACH(a, m->config->listen) {
                r = listener_add_address(m->listener, *a);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", *a);
                log_info("Listening on %s.", *a);
        }
        if (listener_count(m->listener) == 0)
                return log_error_errno(-EINVAL, "Nothing to listen on: pass --listen=ADDRESS:PORT or start "
                                       "multichat.socket.");
        r = listener_set_accepting(m->listener, false);
        if (r < 0)
                return log_error_errno(r, "Failed to pause the listening sockets: %m");

        r = sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       USEC_PER_SEC, on_status_timer, m);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &m->keepalive_timer, CLOCK_MONOTONIC,
                                               keepalive_sweep_usec(m), 0, on_keepalive_timer, m);
        if (r < 0)
                return log_error_errno(r, "Failed to start the timers: %m");

        r = redis_subscribe(m->redis, "mc:events");
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to events: %m");
        r = redis_start(m->redis);
        if (r < 0)
                return log_error_errno(r, "Failed to start connecting to Redis: %m");
        manager_update_notify(m);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Connections first: they reach into rooms, Redis and the bus. */
        m->web = web_free(m->web);
        ws_write_scheduled(m);          /* only drops references: every connection is closed */
        m->write_source = sd_event_source_disable_unref(m->write_source);
        m->ping_frame = frame_unref(m->ping_frame);
        m->listener = listener_free(m->listener);
        m->bus = bus_free(m->bus);
        m->auth = auth_client_free(m->auth);
        m->redis = redis_free(m->redis);
        m->rooms = room_registry_free(m->rooms);
        m->rooms_frame = frame_unref(m->rooms_frame);
        m->login_limiter = login_limiter_free(m->login_limiter);
        m->static_files = static_files_free(m->static_files);
        m->uv = loop_uv_free(m->uv);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->keepalive_timer);
        sd_event_source_disable_unref(m->shutdown_timer);
        sd_event_unref(m->event);
        strv_free(m->auth_helper_args);
        if (m->config != m->config_boot)
                config_free(m->config);
        config_free(m->config_boot);
        return mfree(m);
}
