/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon: builds every part from the configuration, wires them together, signals, readiness, shutdown. */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "auth/auth-client.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strv.h"
#include "bus/admin.h"
#include "bus/bus.h"
#include "chat/chat.h"
#include "config.h"
#include "manager.h"
#include "metrics.h"
#include "net/listen.h"
#include "net/login-limit.h"
#include "net/loop-uv.h"
#include "net/static-files.h"
#include "net/web.h"
#include "net/ws.h"
#include "redis/redis.h"
#include "store/store.h"

#define STATUS_INTERVAL_USEC (5 * USEC_PER_SEC)
#define HEARTBEAT_INTERVAL_USEC (10 * USEC_PER_SEC)
/* Clients get this long to take their close frames before we exit anyway. */
#define SHUTDOWN_TIMEOUT_USEC (3 * USEC_PER_SEC)

static unsigned manager_conn_count(Manager *m) {
        return m->web ? ws_hub_count(web_hub(m->web)) : 0;
}

/* Tells systemd how we are doing; ready: this is READY=1 too. */
static void manager_notify(Manager *m, bool ready) {
        char status[256];

        if (m->readiness.state == READINESS_STOPPING)
                return;
        if (!chat_is_ready(m->chat) && redis_problem(m->redis) != REDIS_PROBLEM_NONE)
                snprintf(status, sizeof status, "Waiting for Redis: %s (%s); %u connections.",
                         redis_problem_to_string(redis_problem(m->redis)), redis_last_error(m->redis),
                         manager_conn_count(m));
        else if (!chat_is_ready(m->chat) && chat_waiting_for(m->chat))
                snprintf(status, sizeof status, "Waiting for Redis: %s; %u connections.",
                         chat_waiting_for(m->chat), manager_conn_count(m));
        else if (!chat_is_ready(m->chat))
                snprintf(status, sizeof status, "Waiting for Redis (%s); %u connections.",
                         redis_last_error(m->redis)[0] ? redis_last_error(m->redis) : "connecting",
                         manager_conn_count(m));
        else if (m->readiness.state == READINESS_WAITING_BUS)
                snprintf(status, sizeof status, "Waiting for the D-Bus name; %u connections.", manager_conn_count(m));
        else if (chat_data_lost_usec(m->chat) > 0) {
                char when[32];
                time_t t = (time_t) (chat_data_lost_usec(m->chat) / USEC_PER_SEC);
                struct tm tm;

                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
                snprintf(status, sizeof status, "Serving %u connections in %zu rooms; Redis lost its data at %s "
                         "(rooms put back, messages and sessions gone).", manager_conn_count(m),
                         chat_room_count(m->chat), when);
        } else
                snprintf(status, sizeof status, "Serving %u connections in %zu rooms; %llu messages relayed.",
                         manager_conn_count(m), chat_room_count(m->chat),
                         (unsigned long long) chat_messages_relayed(m->chat));
        (void) sd_notifyf(false, "%sSTATUS=%s", ready ? "READY=1\n" : "", status);
}

static void manager_update_status(Manager *m) {
        manager_notify(m, false);
}

static void manager_apply_readiness(Manager *m, unsigned actions) {
        int r;

        if (actions & READINESS_START_BUS) {
                r = bus_start(m->bus);
                if (r < 0) {
                        log_error_errno(r, "Failed to connect to D-Bus (%s): %m", m->config_boot->bus);
                        manager_stop(m, EXIT_FAILURE);
                        return;
                }
        }
        if (actions & READINESS_SEND_READY) {
                (void) listener_set_accepting(m->listener, true);
                log_info("Ready.");
        }
        manager_notify(m, actions & READINESS_SEND_READY);
}

/* ---- the chat's hooks ---- */

static void on_chat_send(void *conn, Frame *f) {
        ws_conn_send(conn, f);
}

static void on_chat_close(void *conn, uint16_t code, const char *reason) {
        ws_conn_close(conn, code, reason);
}

static void on_chat_room_added(void *ud, const char *id) {
        Manager *m = ud;

        (void) bus_emit_room_added(m->bus, id);
}

static void on_chat_room_changed(void *ud, const char *id, unsigned changes) {
        Manager *m = ud;
        unsigned p = 0;

        if (changes & CHAT_ROOM_TITLE)
                p |= BUS_ROOM_TITLE;
        if (changes & CHAT_ROOM_STAFF_ONLY)
                p |= BUS_ROOM_STAFF_ONLY;
        if (changes & CHAT_ROOM_MEMBERS)
                p |= BUS_ROOM_MEMBERS;
        (void) bus_emit_room_changed(m->bus, id, p);
}

static void on_chat_room_removed(void *ud, const char *id) {
        Manager *m = ud;

        (void) bus_emit_room_removed(m->bus, id);
}

static void on_chat_ready_changed(void *ud, bool ready) {
        Manager *m = ud;

        manager_apply_readiness(m, readiness_chat_changed(&m->readiness, ready));
}

static const ChatHooks chat_hooks = {
        .send = on_chat_send,
        .close = on_chat_close,
        .room_added = on_chat_room_added,
        .room_changed = on_chat_room_changed,
        .room_removed = on_chat_room_removed,
        .ready_changed = on_chat_ready_changed,
};

/* ---- the web front's hooks ---- */

static int on_conn_ready(void *ud, Conn *c) {
        Manager *m = ud;
        ChatMember *member;
        int r;

        r = chat_member_new(m->chat, c, c->username, c->session_id, c->staff, &member);
        if (r < 0)
                return r;
        c->userdata = member;
        return 0;
}

static void on_conn_command(void *ud, Conn *c, const Command *cmd) {
        chat_member_command(c->userdata, cmd);
}

static void on_conn_closed(void *ud, Conn *c) {
        chat_member_closed(c->userdata);
}

static void manager_maybe_exit(Manager *m);

static void on_conns_changed(void *ud, unsigned n) {
        Manager *m = ud;

        if (m->readiness.state == READINESS_READY)
                (void) listener_set_accepting(m->listener, n < m->config->max_connections);
        (void) bus_emit_manager_changed(m->bus, BUS_MANAGER_CONNECTIONS);
        manager_maybe_exit(m);
}

static void on_peer_removed(void *ud) {
        manager_maybe_exit(ud);
}

static char *on_rooms_json(void *ud) {
        return chat_rooms_json(((Manager *) ud)->chat);
}

static bool on_healthy(void *ud, const char **ret_reason) {
        Manager *m = ud;
        RedisProblem p = redis_problem(m->redis);

        if (chat_is_ready(m->chat))
                return true;
        if (p != REDIS_PROBLEM_NONE)
                *ret_reason = redis_problem_to_string(p);
        else
                *ret_reason = redis_is_connected(m->redis) ? "starting" : "redis unreachable";
        return false;
}

static int on_publish_logout(void *ud, const char *session_id) {
        return chat_publish_logout(((Manager *) ud)->chat, session_id);
}

static int on_metrics(void *ud, const char *peer, char **ret) {
        Manager *m = ud;
        MetricsSnapshot s;

        if (!metrics_peer_is_allowed(m->config->metrics_allow, peer))
                return -EPERM;
        metrics_collect(&s, m->chat, m->web, &m->web_stats, m->redis, m->redis_reconnects);
        return metrics_format(&s, ret);
}

static const WebHooks web_hooks = {
        .conn_ready = on_conn_ready,
        .conn_command = on_conn_command,
        .conn_closed = on_conn_closed,
        .conns_changed = on_conns_changed,
        .peer_removed = on_peer_removed,
        .rooms_json = on_rooms_json,
        .healthy = on_healthy,
        .publish_logout = on_publish_logout,
        .metrics = on_metrics,
};

/* ---- the D-Bus backend's hooks ---- */

static int on_foreach_connection(void *ud, BusConnectionVisitor visit, void *visit_ud) {
        Manager *m = ud;
        int r;

        for (Conn *c = ws_hub_first(web_hub(m->web)); c; c = c->conns_next) {
                const char *ids[CHAT_MEMBER_ROOMS_MAX + 1];

                if (c->state != CONN_READY || !c->userdata)
                        continue;
                (void) chat_member_rooms(c->userdata, ids, ELEMENTSOF(ids));
                r = visit(&(BusConnection) {
                        .username = c->username,
                        .peer = c->peer,
                        .since_usec = c->since_usec,
                        .rooms = ids,
                }, visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint32_t on_connections(void *ud) {
        return manager_conn_count(ud);
}

static void on_name_state(void *ud, int r) {
        Manager *m = ud;

        if (r >= 0) {
                manager_apply_readiness(m, readiness_bus_changed(&m->readiness, true));
                return;
        }
        (void) readiness_bus_changed(&m->readiness, false);
        if (r == -EEXIST)
                log_error("Another process owns org.multichat.Chat1 on the bus; exiting.");
        else
                log_error_errno(r, "Lost the D-Bus connection or name: %m");
        manager_stop(m, EXIT_FAILURE);
}

static const AdminHooks admin_hooks = {
        .foreach_connection = on_foreach_connection,
        .connections = on_connections,
        .name_state = on_name_state,
};

/* ---- Redis ---- */

static void on_redis_state(Redis *r, bool connected, void *userdata) {
        Manager *m = userdata;

        if (connected) {
                log_struct(LOG_INFO, 0, MESSAGE_ID_REDIS_BACK, NULL, "Connected to Redis.");
                if (m->redis_was_connected)
                        m->redis_reconnects++;
                m->redis_was_connected = true;
                chat_on_redis_connected(m->chat);
        } else {
                log_struct(LOG_WARNING, 0, MESSAGE_ID_REDIS_LOST, NULL,
                           "Lost Redis (%s); reconnecting.", redis_last_error(r));
                chat_on_redis_disconnected(m->chat);
        }
        (void) bus_emit_manager_changed(m->bus, BUS_MANAGER_REDIS_CONNECTED);
        manager_update_status(m);
}

static void on_redis_event(Redis *r, RedisEvent event, void *userdata) {
        Manager *m = userdata;
        const char *address = redis_master_address(r);

        if (event == REDIS_EVENT_MASTER_SWITCHED) {
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_REDIS_SWITCHED, LOG_FIELDS({ "REDIS_ADDRESS", address }),
                           "The sentinels switched the Redis master to %s; reconnecting.", address);
                return;
        }

        switch (redis_problem(r)) {
        case REDIS_PROBLEM_CREDENTIALS:
                if (!redis_was_connected(r)) {
                        log_struct(LOG_ERR, 0, MESSAGE_ID_REDIS_CREDENTIALS, LOG_FIELDS({ "REDIS_ADDRESS", address }),
                                   "Redis refused our credentials (%s); check redis-user, redis-password-file "
                                   "and the ACL. Exiting.", redis_last_error(r));
                        manager_stop(m, EXIT_REDIS_CREDENTIALS);
                        return;
                }
                log_struct(LOG_ERR, 0, MESSAGE_ID_REDIS_CREDENTIALS, LOG_FIELDS({ "REDIS_ADDRESS", address }),
                           "Redis refused our credentials (%s); retrying.", redis_last_error(r));
                break;
        case REDIS_PROBLEM_REPLICA:
                log_struct(LOG_ERR, 0, MESSAGE_ID_REDIS_REPLICA, LOG_FIELDS({ "REDIS_ADDRESS", address }),
                           "Redis at %s is a replica (%s); %s", address, redis_last_error(r),
                           m->config_boot->redis_sentinels ? "asking the sentinels for the master."
                                                           : "waiting for it to become a master.");
                break;
        case REDIS_PROBLEM_NONE:
        case REDIS_PROBLEM_UNREACHABLE:
                break;          /* on_redis_state() logs a loss */
        }
        manager_update_status(m);
}

static void on_redis_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        Manager *m = userdata;

        chat_on_redis_message(m->chat, channel, data, len);
}

static void on_redis_shard(Redis *r, const char *channel, bool subscribed, void *userdata) {
        Manager *m = userdata;

        chat_on_redis_shard(m->chat, channel, subscribed);
}

static void on_accept(int fd, const char *peer, void *userdata) {
        Manager *m = userdata;
        int r;

        r = web_adopt(m->web, fd);
        if (r < 0)
                log_warning_errno(r, "Failed to take over the connection from %s: %m", peer);
}

/* ---- timers and shutdown ---- */

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (usec - m->last_heartbeat_usec >= HEARTBEAT_INTERVAL_USEC) {
                m->last_heartbeat_usec = usec;
                chat_heartbeat(m->chat);
        }
        manager_update_status(m);
        (void) sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
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
        if (m->readiness.state != READINESS_STOPPING || m->exiting || !m->web ||
            manager_conn_count(m) > 0 || web_peer_count(m->web) > 0)
                return;
        m->exiting = true;
        chat_retire(m->chat);
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
        if (m->readiness.state == READINESS_STOPPING)
                return;
        readiness_stopping(&m->readiness);
        m->web_services.stopping = true;
        m->exit_code = exit_code;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down.");
        log_info("Shutting down; closing %u WebSockets, %u connections in all.", manager_conn_count(m),
                 web_peer_count(m->web));

        if (m->listener)
                (void) listener_set_accepting(m->listener, false);
        ws_hub_close_all(web_hub(m->web), 1001, "server shutting down");
        web_drain(m->web);
        (void) sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                          SHUTDOWN_TIMEOUT_USEC, 0, on_shutdown_timeout, m);
        manager_maybe_exit(m);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_stop(userdata, EXIT_SUCCESS);
        return 0;
}

/* ---- settings and reload ---- */

static void manager_apply_settings(Manager *m) {
        const Config *c = m->config;

        chat_set_settings(m->chat, &(ChatSettings) {
                .history_on_join = c->history_on_join,
                .history_size = c->history_size,
                .overload_lag_usec = c->overload_lag_usec,
        });
        /* Whether to serve TLS, the connection limit and the header budget
         * are decided at start (lws's context is made once); the
         * certificate files are read again on reload (web_reload_tls). */
        m->web_services.settings = (WebSettings) {
                .allowed_origins = c->allowed_origins,
                .tls_certificate = c->tls_certificate,
                .tls_key = c->tls_key,
                .max_connections = m->config_boot->max_connections,
                .keepalive_usec = c->keepalive_usec,
                .session_idle_usec = c->session_idle_usec,
                .session_max_usec = c->session_max_usec,
                .max_message_bytes = c->max_message_bytes,
                .rate_limit = c->rate_limit,
                .rate_burst = c->rate_burst,
                .send_queue_frames = c->send_queue_frames,
                .max_header_bytes = m->config_boot->max_header_bytes,
                .request_timeout_usec = c->request_timeout_usec,
                .max_connections_per_address = c->max_connections_per_address,
        };
        login_limiter_set_limit(m->web_services.login_limiter, c->login_attempts);
}

static void on_static_reloaded(StaticFiles *loaded, int error, void *userdata) {
        Manager *m = userdata;

        if (loaded) {
                static_files_free(m->web_services.static_files);
                m->web_services.static_files = loaded;
                log_info("Reloaded %zu web files.", static_files_count(loaded));
        } else
                log_error_errno(error, "Failed to reload the web root %s, keeping the old files: %m",
                                m->config->web_root);
        m->reloading = false;
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
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
                manager_update_status(m);
                return 0;
        }
        warn_unchanged("redis", m->config_boot->redis, c->redis);
        warn_unchanged("redis-master", m->config_boot->redis_master, c->redis_master);
        warn_unchanged("redis-user", m->config_boot->redis_user, c->redis_user);
        warn_unchanged("redis-password-file", m->config_boot->redis_password_file, c->redis_password_file);
        warn_unchanged("redis-sentinel-user", m->config_boot->redis_sentinel_user, c->redis_sentinel_user);
        warn_unchanged("redis-sentinel-password-file", m->config_boot->redis_sentinel_password_file,
                       c->redis_sentinel_password_file);
        if (!strv_equal(m->config_boot->redis_sentinels, c->redis_sentinels))
                log_notice("Setting 'redis-sentinel' changed; it takes effect on restart.");
        if (!strv_equal(m->config_boot->redis_cluster, c->redis_cluster))
                log_notice("Setting 'redis-cluster' changed; it takes effect on restart.");
        warn_unchanged("bus", m->config_boot->bus, c->bus);
        warn_unchanged("pam-service", m->config_boot->pam_service, c->pam_service);
        log_set_max_level(c->log_level);
        if (m->config != m->config_boot)
                config_free(m->config);
        m->config = c;
        manager_apply_settings(m);
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

/* ---- construction ---- */

static void erase_freep(char **p) {
        if (*p)
                explicit_bzero(*p, strlen(*p));
        free(*p);
}

static int read_password(const char *key, const char *value, char **ret) {
        int r;

        *ret = NULL;
        if (!value)
                return 0;
        r = config_read_secret(value, ret);
        if (r == -ENXIO)
                log_error("%s=%s names a credential, but $CREDENTIALS_DIRECTORY is not set: pass it with "
                          "LoadCredential=%s:/PATH in the unit, or give an absolute path.", key, value, value);
        else if (r == -EBADMSG)
                log_error("%s=%s: expected one line of 1 to %d bytes.", key, value, CONFIG_SECRET_MAX);
        else if (r < 0)
                log_error_errno(r, "Failed to read %s=%s: %m", key, value);
        return r < 0 ? -ENOKEY : 0;
}

/* Passwords are read once, here: a reload keeps them, as it keeps the address. */
static int manager_setup_redis(Manager *m, const Config *c) {
        _cleanup_(erase_freep) char *password = NULL, *sentinel_password = NULL;
        int r;

        r = read_password("redis-password-file", c->redis_password_file, &password);
        if (r >= 0)
                r = read_password("redis-sentinel-password-file", c->redis_sentinel_password_file, &sentinel_password);
        if (r < 0)
                return r;

        r = redis_new_with_options(&m->redis, m->event, &(const RedisOptions) {
                        .url = c->redis_sentinels || c->redis_cluster ? NULL : c->redis,
                        .sentinels = c->redis_sentinels,
                        .cluster = c->redis_cluster,
                        .master_name = c->redis_master,
                        .user = c->redis_user,
                        .password = password,
                        .sentinel_user = c->redis_sentinel_user,
                        .sentinel_password = sentinel_password,
                        .on_event = on_redis_event,
                        .on_shard = on_redis_shard,
                }, on_redis_state, on_redis_message, m);
        if (r < 0)
                return log_error_errno(r, "Invalid Redis settings (redis=%s): %m", c->redis);
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

static int manager_setup_signals(Manager *m) {
        int r;

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
        return 0;
}

static int manager_setup_web(Manager *m) {
        WebServices *s = &m->web_services;
        int r;

        r = static_files_load(&s->static_files, m->config->web_root);
        if (r < 0)
                return log_error_errno(r, "Failed to load the web root %s: %m", m->config->web_root);
        r = login_limiter_new(&s->login_limiter, m->config->login_attempts);
        if (r < 0)
                return log_oom();
        s->event = m->event;
        s->uv = m->uv;
        s->redis = m->redis;
        s->auth = m->auth;
        s->stats = &m->web_stats;
        s->hooks = &web_hooks;
        s->userdata = m;
        manager_apply_settings(m);

        r = web_new(&m->web, s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up libwebsockets (is libwebsockets-evlib-uv installed?): %m");
        return 0;
}

int manager_new(Manager **ret, Config *config, int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof *m);
        if (!m) {
                config_free(config);
                return -ENOMEM;
        }
        m->config = m->config_boot = config;
        m->argc = argc;
        m->argv = argv;

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");
        (void) sd_event_set_watchdog(m->event, true);
        r = manager_setup_signals(m);
        if (r < 0)
                return r;

        r = loop_uv_new(&m->uv, m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to set up libuv: %m");
        r = manager_setup_redis(m, config);
        if (r < 0)
                return r;
        r = manager_setup_auth(m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the auth helper: %m");
        r = chat_new(&m->chat, m->event, m->redis, &chat_hooks, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the chat: %m");
        r = manager_setup_web(m);
        if (r < 0)
                return r;
        r = admin_new(&m->admin, m->chat, m->auth, config->admin_group, &admin_hooks, m);
        if (r >= 0)
                r = bus_new(&m->bus, m->event, config->bus, &admin_bus_backend, m->admin);
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
        if (r < 0)
                return log_error_errno(r, "Failed to start the timers: %m");

        r = redis_subscribe(m->redis, STORE_EVENTS_CHANNEL);
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to events: %m");
        r = redis_start(m->redis);
        if (r < 0)
                return log_error_errno(r, "Failed to start connecting to Redis: %m");
        manager_update_status(m);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Connections first: their members reach into the chat, Redis and
         * the bus. Redis before the chat: freeing it answers every command
         * still pending, and those handlers (room list, replays) are the
         * chat's. */
        m->web = web_free(m->web);
        m->listener = listener_free(m->listener);
        m->bus = bus_free(m->bus);
        m->admin = admin_free(m->admin);
        m->auth = auth_client_free(m->auth);
        m->redis = redis_free(m->redis);
        m->chat = chat_free(m->chat);
        m->web_services.login_limiter = login_limiter_free(m->web_services.login_limiter);
        m->web_services.static_files = static_files_free(m->web_services.static_files);
        m->uv = loop_uv_free(m->uv);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->shutdown_timer);
        sd_event_unref(m->event);
        strv_free(m->auth_helper_args);
        if (m->config != m->config_boot)
                config_free(m->config);
        config_free(m->config_boot);
        return mfree(m);
}
