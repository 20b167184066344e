/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mc-loadgen: drives a running multichat stack through one scenario and prints the measurements as JSON. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "lg-stats.h"
#include "lg-worker.h"

#define MAX_PIDS 64     /* daemons, their auth helpers and Redis */
#define ELEMENTS(x) (sizeof(x) / sizeof((x)[0]))
#define MAX_RATES 32

typedef enum Scenario {
        SCEN_IDLE,
        SCEN_CHAT,
        SCEN_LOGIN,
        SCEN_RECONNECT,
        SCEN_STORM,
        SCEN_CREATE_ROOMS,
} Scenario;

static const char *const scenario_names[] = {
        [SCEN_IDLE] = "idle",
        [SCEN_CHAT] = "chat",
        [SCEN_LOGIN] = "login",
        [SCEN_RECONNECT] = "reconnect",
        [SCEN_STORM] = "storm",
        [SCEN_CREATE_ROOMS] = "create-rooms",
};

static Scenario arg_scenario = SCEN_CHAT;
static Params arg_params = {
        .n_workers = 2,
        .n_users = 100,
        .user_prefix = "u",
        .user_width = 5,
        .password = "pw",
        .members = 100,
        .senders = 1,
        .message_bytes = 100,
        .connect_concurrency = 256,
};
static double arg_rates[MAX_RATES];
static unsigned arg_n_rates;
static double arg_step_seconds = 2.0;
static double arg_stop_p99_ms = 50.0;
static bool arg_fixed;                  /* run every rate, whatever happens */
static unsigned arg_past_limit = 1;     /* steps over the p99 limit before rising stops */
static unsigned arg_connections = 1000; /* idle */
static unsigned arg_idle_steps = 4;
static double arg_idle_hold = 3.0;
static unsigned arg_right_slots = 8;
static unsigned arg_wrong_slots = 100;
static double arg_bg_rate = 200;
static double arg_stagger = 2.0;        /* the daemon's fail delay: wrong logins in flight stay even */
static bool arg_reconnect_join;
static double arg_storm_timeout = 600;
static double arg_connect_timeout = 600;
static const char *arg_bus;
static const char *arg_check_buses[MAX_TARGETS];        /* idle: ask these daemons how many they hold */
static unsigned arg_n_check_buses;
static unsigned arg_count = 1;
static const char *arg_title = "bench";
static const char *arg_label = "";
static cpu_set_t arg_cpus;              /* workers run here; empty: anywhere */
static bool arg_pin;
static struct {
        char role[16];
        pid_t pid;
} arg_pids[MAX_PIDS];
static unsigned arg_n_pids;

/* ---- small helpers ---- */

_Noreturn static void die(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("mc-loadgen: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(EXIT_FAILURE);
}

static void note(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("# ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static void sleep_until(uint64_t t) {
        for (;;) {
                uint64_t n = now_ns();
                if (n >= t)
                        return;
                struct timespec ts = { .tv_sec = (time_t) ((t - n) / 1000000000ULL),
                                       .tv_nsec = (long) ((t - n) % 1000000000ULL) };
                nanosleep(&ts, NULL);
        }
}

static void sleep_s(double s) {
        sleep_until(now_ns() + (uint64_t) (s * 1e9));
}

/* ---- workers ---- */

typedef struct Master {
        Params *p;
        WorkerShm *shm;
        char *cookies;
        pid_t pids[64];
        int cmd_fds[64];
        int ack_fd;
        unsigned n_workers;
} Master;

static void master_start(Master *m, Params *p) {
        size_t shm_size = sizeof(WorkerShm) * p->n_workers + (size_t) p->n_users * COOKIE_MAX;
        int ack[2];
        void *mem;

        m->p = p;
        m->n_workers = p->n_workers;
        mem = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                die("mmap: %m");
        m->shm = mem;
        m->cookies = (char *) mem + sizeof(WorkerShm) * p->n_workers;
        if (pipe2(ack, O_CLOEXEC) < 0)
                die("pipe: %m");
        m->ack_fd = ack[0];
        for (unsigned i = 0; i < p->n_workers; i++) {
                int cmd[2];
                if (pipe2(cmd, O_CLOEXEC) < 0)
                        die("pipe: %m");
                pid_t pid = fork();
                if (pid < 0)
                        die("fork: %m");
                if (pid == 0) {
                        /* Off the server's cores: on a small machine the
                         * generator would otherwise preempt what it measures. */
                        if (arg_pin && sched_setaffinity(0, sizeof(arg_cpus), &arg_cpus) < 0)
                                fprintf(stderr, "mc-loadgen worker %u: sched_setaffinity: %m\n", i);
                        close(cmd[1]);
                        close(ack[0]);
                        int r = worker_run(p, i, cmd[0], ack[1], &m->shm[i], m->cookies);
                        if (r < 0)
                                fprintf(stderr, "mc-loadgen worker %u: %s\n", i, strerror(-r));
                        _exit(r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
                }
                close(cmd[0]);
                m->pids[i] = pid;
                m->cmd_fds[i] = cmd[1];
        }
        close(ack[1]);
}

static void master_send(Master *m, unsigned i, const Cmd *c) {
        if (write(m->cmd_fds[i], c, sizeof(*c)) != (ssize_t) sizeof(*c))
                die("worker %u is gone: %m", i);
}

static void master_broadcast(Master *m, const Cmd *c) {
        for (unsigned i = 0; i < m->n_workers; i++)
                master_send(m, i, c);
}

/* Waits for `count` acknowledgements; false on timeout. */
static bool master_wait_acks(Master *m, unsigned count, double timeout_s) {
        uint64_t deadline = now_ns() + (uint64_t) (timeout_s * 1e9);

        while (count > 0) {
                uint64_t n = now_ns();
                if (n >= deadline)
                        return false;
                struct pollfd pfd = { .fd = m->ack_fd, .events = POLLIN };
                int r = poll(&pfd, 1, (int) ((deadline - n) / 1000000 + 1));
                if (r < 0 && errno != EINTR)
                        die("poll: %m");
                if (r <= 0)
                        continue;
                uint8_t buf[64];
                ssize_t k = read(m->ack_fd, buf, count < sizeof(buf) ? count : sizeof(buf));
                if (k == 0)
                        die("a worker died");
                if (k > 0)
                        count -= (unsigned) k;
        }
        return true;
}

static void master_stop(Master *m) {
        Cmd c = { .op = CMD_QUIT };

        for (unsigned i = 0; i < m->n_workers; i++) {
                (void) !write(m->cmd_fds[i], &c, sizeof(c));
                close(m->cmd_fds[i]);
        }
        for (unsigned i = 0; i < m->n_workers; i++) {
                int status;
                /* Workers exit at once; closing thousands of sockets takes a moment. */
                for (int t = 0; t < 500; t++) {
                        if (waitpid(m->pids[i], &status, WNOHANG) != 0)
                                goto next;
                        sleep_s(0.02);
                }
                kill(m->pids[i], SIGKILL);
                waitpid(m->pids[i], &status, 0);
        next:;
        }
}

static uint64_t sum_open(Master *m) {
        uint64_t s = 0;
        for (unsigned i = 0; i < m->n_workers; i++)
                s += __atomic_load_n(&m->shm[i].conns_open, __ATOMIC_RELAXED);
        return s;
}

static uint64_t sum_failed(Master *m) {
        uint64_t s = 0;
        for (unsigned i = 0; i < m->n_workers; i++)
                s += __atomic_load_n(&m->shm[i].conns_failed, __ATOMIC_RELAXED);
        return s;
}

/* A counter of every worker's WorkerShm, summed: offsetof(WorkerShm, field). */
static uint64_t sum_shm(const Master *m, size_t offset) {
        uint64_t s = 0;

        for (unsigned i = 0; i < m->n_workers; i++)
                s += __atomic_load_n((const uint64_t *) ((const char *) &m->shm[i] + offset), __ATOMIC_RELAXED);
        return s;
}

/* ---- /proc ---- */

typedef struct Snapshot {
        ProcSample procs[MAX_PIDS];
        ProcSample workers[64];
        HostSample host;
        uint64_t t;
} Snapshot;

static Snapshot snapshot(Master *m) {
        Snapshot s = { .t = now_ns(), .host = host_sample() };

        for (unsigned i = 0; i < arg_n_pids; i++)
                s.procs[i] = proc_sample(arg_pids[i].pid);
        for (unsigned i = 0; m && i < m->n_workers; i++)
                s.workers[i] = proc_sample(m->pids[i]);
        return s;
}

static bool role_is(unsigned i, const char *role) {
        return i < MAX_PIDS && strncmp(arg_pids[i].role, role, sizeof(arg_pids[i].role)) == 0;
}

static uint64_t cpu_us(const ProcSample *a, const ProcSample *b, bool sched) {
        if (!a->ok || !b->ok)
                return 0;
        return sched ? (b->sched_ns - a->sched_ns) / 1000 : proc_ticks_to_us(b->cpu_ticks - a->cpu_ticks);
}

static uint64_t role_cpu_us(const Snapshot *a, const Snapshot *b, const char *role, bool sched) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < arg_n_pids; i++)
                if (role_is(i, role))
                        sum += cpu_us(&a->procs[i], &b->procs[i], sched);
        return sum;
}

static uint64_t loadgen_cpu_us(const Master *m, const Snapshot *a, const Snapshot *b, bool sched) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < m->n_workers; i++)
                sum += cpu_us(&a->workers[i], &b->workers[i], sched);
        return sum;
}

static uint64_t role_rss_kb(const Snapshot *s, const char *role) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < arg_n_pids; i++)
                if (role_is(i, role))
                        sum += s->procs[i].rss_kb;
        return sum;
}

/* ---- JSON out ---- */

static void json_hist(const char *name, const Hist *h) {
        printf("\"%s\": {\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64
               ", \"p999\": %" PRIu64 ", \"max\": %" PRIu64 ", \"mean\": %.1f}",
               name, h->count, hist_quantile(h, 0.5), hist_quantile(h, 0.9), hist_quantile(h, 0.99),
               hist_quantile(h, 0.999), h->max_us, h->count ? (double) h->sum_us / (double) h->count : 0.0);
}

static void json_counts(const char *name, const char *const *names, const uint64_t *v, unsigned n) {
        bool first = true;

        printf("\"%s\": {", name);
        for (unsigned i = 0; i < n; i++) {
                if (!v[i])
                        continue;
                printf("%s\"%s\": %" PRIu64, first ? "" : ", ", names[i], v[i]);
                first = false;
        }
        printf("}");
}

/* The roles given with --pid, each once, in order. */
static unsigned roles(const char *out[static MAX_PIDS]) {
        unsigned n = 0;

        for (unsigned i = 0; i < arg_n_pids; i++) {
                unsigned j;
                for (j = 0; j < n; j++)
                        if (role_is(i, out[j]))
                                break;
                if (j == n)
                        out[n++] = arg_pids[i].role;
        }
        return n;
}

static void json_procs(const Master *m, const Snapshot *a, const Snapshot *b) {
        const char *r[MAX_PIDS];
        unsigned n = roles(r);

        for (unsigned sched = 0; sched < 2; sched++) {
                printf("\"%s\": {", sched ? "cpu_us_sched" : "cpu_us");
                for (unsigned i = 0; i < n; i++)
                        printf("\"%s\": %" PRIu64 ", ", r[i], role_cpu_us(a, b, r[i], sched));
                printf("\"loadgen\": %" PRIu64 "}, ", loadgen_cpu_us(m, a, b, sched));
        }
        printf("\"rss_kb\": {");
        for (unsigned i = 0; i < n; i++)
                printf("%s\"%s\": %" PRIu64, i ? ", " : "", r[i], role_rss_kb(b, r[i]));
        printf("}, \"procs\": [");
        for (unsigned i = 0; i < arg_n_pids; i++)
                printf("%s{\"role\": \"%s\", \"pid\": %d, \"cpu_us\": %" PRIu64 ", \"rss_kb\": %" PRIu64 "}",
                       i ? ", " : "", arg_pids[i].role, (int) arg_pids[i].pid,
                       cpu_us(&a->procs[i], &b->procs[i], false), b->procs[i].rss_kb);
        printf("]");
}

/* The machine during a step, in cores: everything busy, the part of it
 * that none of the sampled processes (nor the generator) account for,
 * and what the hypervisor took. Noise shows here. */
static void json_host(const Master *m, const Snapshot *a, const Snapshot *b) {
        double s = (double) (b->t - a->t) / 1e9;
        double busy = (double) proc_ticks_to_us(b->host.busy_ticks - a->host.busy_ticks) / 1e6 / s;
        double steal = (double) proc_ticks_to_us(b->host.steal_ticks - a->host.steal_ticks) / 1e6 / s;
        double ours = (double) loadgen_cpu_us(m, a, b, false);

        for (unsigned i = 0; i < arg_n_pids; i++)
                ours += (double) cpu_us(&a->procs[i], &b->procs[i], false);
        ours = ours / 1e6 / s;
        if (!a->host.ok || !b->host.ok || s <= 0) {
                printf("\"host_load\": null");
                return;
        }
        printf("\"host_load\": {\"busy\": %.3f, \"others\": %.3f, \"steal\": %.3f}", busy,
               busy > ours ? busy - ours : 0.0, steal);
}

/* CPU per unit of work (deliveries, handshakes, logins) by role. */
static void json_cpu_per(const char *name, const Snapshot *a, const Snapshot *b, uint64_t units) {
        const char *r[MAX_PIDS];
        unsigned n = roles(r);

        printf("\"%s\": {", name);
        for (unsigned i = 0; i < n; i++)
                printf("%s\"%s\": %.3f, \"%s_sched\": %.3f", i ? ", " : "", r[i],
                       units ? (double) role_cpu_us(a, b, r[i], false) / (double) units : 0, r[i],
                       units ? (double) role_cpu_us(a, b, r[i], true) / (double) units : 0);
        printf("}");
}

static void json_params(void) {
        const Params *p = &arg_params;

        printf("\"params\": {\"workers\": %u, \"targets\": %u, \"users\": %u, \"member_users\": %u, "
               "\"rooms\": %u, \"members\": %u, \"senders\": %u, \"connections\": %u, \"message_bytes\": %u, "
               "\"step_seconds\": %.3f, \"stop_p99_ms\": %.1f}",
               p->n_workers, p->n_targets, p->n_users, p->n_member_users, p->n_rooms, p->members, p->senders,
               p->n_members, p->message_bytes, arg_step_seconds, arg_stop_p99_ms);
}

/* ---- steps ---- */

static void aggregate(const Master *m, unsigned k, StepStats *out) {
        memset(out, 0, sizeof(*out));
        for (unsigned i = 0; i < m->n_workers; i++) {
                const StepStats *s = &m->shm[i].steps[k];
                out->sent += s->sent;
                out->expected += s->expected;
                out->received += s->received;
                if (s->last_recv_ns > out->last_recv_ns)
                        out->last_recv_ns = s->last_recv_ns;
                out->other_frames += s->other_frames;
                for (unsigned j = 0; j < _ERR_MAX; j++)
                        out->errors[j] += s->errors[j];
                for (unsigned j = 0; j < _CLOSE_MAX; j++)
                        out->closes[j] += s->closes[j];
                out->ops_ok += s->ops_ok;
                out->ops_failed += s->ops_failed;
                for (unsigned r = 0; r < 2; r++)
                        for (unsigned j = 0; j < _HTTP_MAX; j++)
                                out->http[r][j] += s->http[r][j];
                hist_merge(&out->lat, &s->lat);
                hist_merge(&out->op_lat[0], &s->op_lat[0]);
                hist_merge(&out->op_lat[1], &s->op_lat[1]);
        }
}

static uint64_t step_counter(const Master *m, unsigned k, bool expected) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < m->n_workers; i++) {
                const StepStats *s = &m->shm[i].steps[k];
                sum += __atomic_load_n(expected ? &s->expected : &s->received, __ATOMIC_RELAXED);
        }
        return sum;
}

/* Whether worker w has senders (planned: member g belongs to worker g % W). */
static bool worker_sends(const Params *p, unsigned w) {
        for (uint64_t g = w; g < p->n_members; g += p->n_workers)
                if (p->n_rooms > 0 && g % p->members < p->senders)
                        return true;
        return false;
}

typedef struct StepRun {
        unsigned k;
        const char *label;
        double rate;                    /* chat messages/s offered, all workers */
        double seconds;
        StepStats s;
        Snapshot before, after;
        double window_s;
        bool timed_out;
} StepRun;

static void run_step(Master *m, StepRun *r, uint32_t right, uint32_t wrong, uint32_t reconnect) {
        const Params *p = m->p;
        Cmd c = {
                .op = CMD_STEP,
                .step = r->k,
                .right_slots = right,
                .wrong_slots = wrong,
                .reconnect_slots = reconnect,
                .reconnect_join = arg_reconnect_join,
                .stagger_ns = (uint64_t) (arg_stagger * 1e9),
        };
        uint64_t last = UINT64_MAX, t_change, t_end;

        c.t0_ns = now_ns() + 50 * 1000000ULL;
        c.t_end_ns = t_end = c.t0_ns + (uint64_t) (r->seconds * 1e9);
        c.rate = r->rate;
        c.send_slots = 0;
        for (unsigned w = 0; w < m->n_workers; w++)
                c.send_slots += worker_sends(p, w);
        for (unsigned w = 0, slot = 0; w < m->n_workers; w++) {
                c.send_slot = slot;
                if (worker_sends(p, w))
                        slot++;
                else
                        c.send_slot = UINT32_MAX;       /* never matches: sends nothing */
                master_send(m, w, &c);
        }
        sleep_until(c.t0_ns);
        r->before = snapshot(m);
        if (!master_wait_acks(m, m->n_workers, r->seconds + 60))
                r->timed_out = true;

        /* Drain: until every delivery owed arrived, or nothing moved for 1 s. */
        t_change = now_ns();
        for (;;) {
                uint64_t now = now_ns(), got = step_counter(m, r->k, false), want = step_counter(m, r->k, true);
                if (got >= want)
                        break;
                if (got != last) {
                        last = got;
                        t_change = now;
                } else if (now - t_change > 1000000000ULL)
                        break;
                if (now - t_end > 20 * 1000000000ULL)
                        break;
                sleep_s(0.01);
        }
        r->after = snapshot(m);
        aggregate(m, r->k, &r->s);
        r->window_s = r->seconds;
        if (r->s.last_recv_ns > c.t0_ns && (double) (r->s.last_recv_ns - c.t0_ns) / 1e9 > r->window_s)
                r->window_s = (double) (r->s.last_recv_ns - c.t0_ns) / 1e9;
}

static void json_step(const Master *m, const StepRun *r) {
        const StepStats *s = &r->s;
        uint64_t lost = s->expected > s->received ? s->expected - s->received : 0;
        const char *roles_seen[MAX_PIDS];
        unsigned n_roles = roles(roles_seen);
        double cpu_s = (double) (r->after.t - r->before.t) / 1e9;

        printf("{\"step\": %u, \"label\": \"%s\", \"offered_msgs_per_s\": %.1f, \"offered_deliveries_per_s\": %.1f, "
               "\"seconds\": %.3f, \"window_s\": %.3f, \"measured_s\": %.3f, \"timed_out\": %s, ",
               r->k, r->label ? r->label : "", r->rate, r->rate * m->p->members, r->seconds, r->window_s, cpu_s,
               r->timed_out ? "true" : "false");
        printf("\"sent\": %" PRIu64 ", \"sent_per_s\": %.1f, \"expected\": %" PRIu64 ", \"received\": %" PRIu64
               ", \"lost\": %" PRIu64 ", \"deliveries_per_s\": %.1f, \"other_frames\": %" PRIu64 ", ",
               s->sent, (double) s->sent / r->seconds, s->expected, s->received, lost,
               (double) s->received / r->window_s, s->other_frames);
        json_hist("latency_us", &s->lat);
        printf(", ");
        json_counts("errors", error_names, s->errors, _ERR_MAX);
        printf(", ");
        json_counts("closes", close_names, s->closes, _CLOSE_MAX);
        printf(", \"ops_ok\": %" PRIu64 ", \"ops_failed\": %" PRIu64 ", \"ops_per_s\": %.1f, ", s->ops_ok,
               s->ops_failed, (double) s->ops_ok / r->seconds);
        json_hist("op_latency_us", &s->op_lat[0]);
        printf(", ");
        json_hist("right_login_latency_us", &s->op_lat[1]);
        printf(", ");
        json_hist("wrong_login_latency_us", &s->op_lat[0]);
        printf(", ");
        json_counts("http_right", http_names, s->http[1], _HTTP_MAX);
        printf(", ");
        json_counts("http_wrong", http_names, s->http[0], _HTTP_MAX);
        printf(", ");
        json_procs(m, &r->before, &r->after);
        printf(", ");
        json_cpu_per("cpu_per_delivery_us", &r->before, &r->after, s->received);
        printf(", ");
        json_cpu_per("cpu_per_op_us", &r->before, &r->after, s->ops_ok);
        /* Cores busy on average: who was the bottleneck. */
        printf(", \"cpu_load\": {");
        for (unsigned i = 0; i < n_roles; i++)
                printf("\"%s\": %.3f, ", roles_seen[i],
                       (double) role_cpu_us(&r->before, &r->after, roles_seen[i], true) / 1e6 / cpu_s);
        printf("\"loadgen\": %.3f}, ", (double) loadgen_cpu_us(m, &r->before, &r->after, true) / 1e6 / cpu_s);
        json_host(m, &r->before, &r->after);
        printf("}");
}

#define VERDICT_P99 "p99 over limit"

static bool streq_ptr(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* Why a rising chat step is the last one, or NULL to go on. */
static const char *step_verdict(const StepRun *r) {
        const StepStats *s = &r->s;
        uint64_t closes = 0, planned = (uint64_t) ceil(r->rate * r->seconds);

        for (unsigned j = 0; j < _CLOSE_MAX; j++)
                closes += s->closes[j];
        if (r->timed_out)
                return "timeout";
        if (closes > 0)
                return "connections closed";
        if (s->errors[ERR_RATE_LIMITED] || s->errors[ERR_UNAVAILABLE])
                return "errors";
        if (s->expected > s->received)
                return "loss";
        if ((double) hist_quantile(&s->lat, 0.99) > arg_stop_p99_ms * 1000)
                return VERDICT_P99;
        if ((double) s->sent < 0.9 * (double) planned)
                return "generator could not send the offered rate";
        return NULL;
}

/* ---- setup shared by scenarios ---- */

static void setup_logins(Master *m) {
        uint64_t t = now_ns();
        unsigned missing = 0;
        Cmd c = { .op = CMD_LOGIN_USERS };

        master_broadcast(m, &c);
        if (!master_wait_acks(m, m->n_workers, 300))
                die("setup logins timed out");
        for (unsigned u = 0; u < m->p->n_users; u++)
                if (!m->cookies[(size_t) u * COOKIE_MAX])
                        missing++;
        note("logged in %u users in %.2fs (%u failed, %" PRIu64 " refused once and tried again)",
             m->p->n_users - missing, (double) (now_ns() - t) / 1e9, missing,
             sum_shm(m, offsetof(WorkerShm, setup_login_retries)));
        if (missing > 0)
                die("%u setup logins failed", missing);
}

typedef struct ConnectResult {
        uint64_t open, failed;
        double seconds;
        Snapshot before, after;
} ConnectResult;

static ConnectResult connect_members(Master *m, uint64_t goal) {
        ConnectResult r = { .before = snapshot(m) };
        Cmd c = { .op = CMD_CONNECT, .n = goal };

        master_broadcast(m, &c);
        if (!master_wait_acks(m, m->n_workers, arg_connect_timeout))
                die("connecting %" PRIu64 " members timed out (%" PRIu64 " open)", goal, sum_open(m));
        r.after = snapshot(m);
        r.open = sum_open(m);
        r.failed = sum_failed(m);
        r.seconds = (double) (r.after.t - r.before.t) / 1e9;
        return r;
}

static void json_connect(const char *name, const Master *m, const ConnectResult *r) {
        printf("\"%s\": {\"open\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"seconds\": %.3f, \"per_s\": %.1f, ",
               name, r->open, r->failed, r->seconds, r->seconds > 0 ? (double) r->open / r->seconds : 0);
        json_procs(m, &r->before, &r->after);
        printf("}");
}

/* ---- scenarios ---- */

static int scenario_chat(Master *m) {
        ConnectResult cr;
        StepRun *runs = calloc(arg_n_rates, sizeof(StepRun));
        const char *why = NULL;
        unsigned n = 0, over = 0;

        if (!runs)
                die("out of memory");
        setup_logins(m);
        cr = connect_members(m, m->p->n_members);
        note("%" PRIu64 " members open, %" PRIu64 " failed, %.2fs", cr.open, cr.failed, cr.seconds);
        if (cr.open < m->p->n_members)
                die("only %" PRIu64 " of %u members could connect", cr.open, m->p->n_members);
        sleep_s(0.5);

        for (unsigned i = 0; i < arg_n_rates && i < SETUP_STEP; i++) {
                StepRun *r = &runs[n++];
                r->k = i;
                r->rate = arg_rates[i];
                r->seconds = arg_step_seconds;
                r->label = "rate";
                run_step(m, r, 0, 0, 0);
                why = step_verdict(r);
                note("step %u: %.0f msg/s -> %.0f deliveries/s, p50 %" PRIu64 " p99 %" PRIu64 " max %" PRIu64
                     " us, lost %" PRIu64 "%s%s",
                     i, r->rate, (double) r->s.received / r->window_s, hist_quantile(&r->s.lat, 0.5),
                     hist_quantile(&r->s.lat, 0.99), r->s.lat.max_us,
                     r->s.expected > r->s.received ? r->s.expected - r->s.received : 0, why ? ": " : "",
                     why ? why : "");
                /* Past the latency limit the server may still keep up: one
                 * more step shows how it degrades (or that it says so,
                 * with RATE_LIMITED or 1013) instead of stopping blind. */
                if (why && streq_ptr(why, VERDICT_P99) && ++over <= arg_past_limit)
                        why = NULL;
                if (why && !arg_fixed)
                        break;
                why = NULL;
        }

        printf("{\"scenario\": \"chat\", \"label\": \"%s\", ", arg_label);
        json_params();
        printf(", ");
        json_connect("setup", m, &cr);
        printf(", \"stop_reason\": \"%s\", \"steps\": [", why ? why : "all rates ran");
        for (unsigned i = 0; i < n; i++) {
                if (i)
                        printf(", ");
                json_step(m, &runs[i]);
        }
        printf("]}\n");
        free(runs);
        return 0;
}

/* Members join their rooms and stay; whoever runs the stack restarts the
 * daemons (after "storm: ready" on stderr), and the members come back as
 * the page does (Params.rejoin). Ends when every member is back, or
 * storm-timeout seconds after the first drop. Times are CLOCK_MONOTONIC ns, the driver's clock too. */
static int scenario_storm(Master *m) {
        uint64_t n = m->p->n_members, t_first = 0, t_all_dropped = 0, t_all_back = 0, t_all_caught = 0;
        uint64_t t_start, t_sample = 0;
        Snapshot before = {}, after;
        ConnectResult cr;
        Hist lat = {};
        bool first_point = true;

        setup_logins(m);
        cr = connect_members(m, n);
        note("%" PRIu64 " members open, %" PRIu64 " failed, %.2fs", cr.open, cr.failed, cr.seconds);
        if (cr.open < n)
                die("only %" PRIu64 " of %" PRIu64 " members could connect", cr.open, n);
        note("storm: ready");
        fflush(stderr);

        printf("{\"scenario\": \"storm\", \"label\": \"%s\", ", arg_label);
        json_params();
        printf(", \"away\": %u, ", m->p->away);
        json_connect("setup", m, &cr);
        printf(", \"series\": [");
        t_start = now_ns();
        for (;;) {
                uint64_t now = now_ns();
                uint64_t lost = sum_shm(m, offsetof(WorkerShm, conns_lost));
                uint64_t back = sum_shm(m, offsetof(WorkerShm, storm_rejoined));
                uint64_t caught = sum_shm(m, offsetof(WorkerShm, storm_caught_up));

                if (!t_first && lost > 0) {
                        t_first = now;
                        before = snapshot(m);
                }
                if (!t_all_dropped && lost >= n)
                        t_all_dropped = now;
                if (!t_all_back && back >= n)
                        t_all_back = now;
                if (!t_all_caught && caught >= n)
                        t_all_caught = now;
                if (t_first && now >= t_sample) {
                        printf("%s[%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", first_point ? "" : ", ",
                               now, lost, back, caught);
                        first_point = false;
                        t_sample = now + 250 * 1000000ULL;
                }
                /* A member's replay is counted with its join: once all are
                 * back, caught-up is final. */
                if (t_all_back)
                        break;
                if ((double) (now - (t_first ? t_first : t_start)) / 1e9 > arg_storm_timeout)
                        break;
                sleep_s(0.01);
        }
        after = snapshot(m);
        for (unsigned i = 0; i < m->n_workers; i++)
                hist_merge(&lat, &m->shm[i].storm_lat);
        printf("], \"t_first_drop_ns\": %" PRIu64 ", \"t_all_dropped_ns\": %" PRIu64 ", \"t_all_back_ns\": %" PRIu64
               ", \"t_all_caught_up_ns\": %" PRIu64 ", \"t_end_ns\": %" PRIu64 ", ",
               t_first, t_all_dropped, t_all_back, t_all_caught, after.t);
        printf("\"dropped\": %" PRIu64 ", \"rejoined\": %" PRIu64 ", \"caught_up\": %" PRIu64
               ", \"replayed\": %" PRIu64 ", \"attempts\": %" PRIu64 ", \"retries\": %" PRIu64 ", ",
               sum_shm(m, offsetof(WorkerShm, conns_lost)), sum_shm(m, offsetof(WorkerShm, storm_rejoined)),
               sum_shm(m, offsetof(WorkerShm, storm_caught_up)), sum_shm(m, offsetof(WorkerShm, storm_replayed)),
               sum_shm(m, offsetof(WorkerShm, storm_attempts)), sum_shm(m, offsetof(WorkerShm, storm_retries)));
        json_hist("rejoin_latency_us", &lat);
        printf(", ");
        if (t_first)
                json_procs(m, &before, &after);
        else
                printf("\"cpu_us\": null");
        printf("}\n");
        return 0;
}

static void json_kernel(const char *name, const KernelSample *k) {
        printf("\"%s\": {\"ok\": %s, \"mem_used_kb\": %" PRIu64 ", \"slab_kb\": %" PRIu64
               ", \"sunreclaim_kb\": %" PRIu64 ", \"sockets_used\": %" PRIu64 ", \"tcp_inuse\": %" PRIu64
               ", \"tcp_mem_pages\": %" PRIu64 ", \"slab_caches_kb\": {",
               name, k->ok ? "true" : "false", k->mem_used_kb, k->slab_kb, k->sunreclaim_kb, k->sockets_used,
               k->tcp_inuse, k->tcp_mem_pages);
        for (unsigned i = 0; i < _SLAB_MAX; i++)
                printf("%s\"%s\": %" PRIu64, i ? ", " : "", slab_names[i], k->slab_cache_kb[i]);
        printf("}}");
}

static uint64_t slab_caches_sum(const KernelSample *k) {
        uint64_t s = 0;

        for (unsigned i = 0; i < _SLAB_MAX; i++)
                s += k->slab_cache_kb[i];
        return s;
}

static uint64_t loadgen_rss_kb(const Master *m, const Snapshot *s) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < m->n_workers; i++)
                sum += s->workers[i].rss_kb;
        return sum;
}

typedef struct ProbeResult {
        uint64_t sent, answered;
        double seconds;
} ProbeResult;

/* A ping to every member still open, and the pongs counted: each
 * connection is open on both ends and its daemon's loop serves it. */
static ProbeResult probe(Master *m, double timeout_s) {
        Cmd c = { .op = CMD_PROBE };
        ProbeResult r = {};
        uint64_t t0 = now_ns(), deadline;

        master_broadcast(m, &c);
        if (!master_wait_acks(m, m->n_workers, 60))
                note("probe: a worker did not finish sending its pings");
        r.sent = sum_shm(m, offsetof(WorkerShm, probes_sent));
        deadline = now_ns() + (uint64_t) (timeout_s * 1e9);
        while ((r.answered = sum_shm(m, offsetof(WorkerShm, probes_answered))) < r.sent && now_ns() < deadline)
                sleep_s(0.01);
        r.seconds = (double) (now_ns() - t0) / 1e9;
        return r;
}

/* The daemon's own count (Manager.Connections), over its bus. */
static int bus_connections(const char *address, uint32_t *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = NULL;
        uint32_t n = 0;
        int r;

        if ((r = sd_bus_new(&bus)) < 0 || (r = sd_bus_set_address(bus, address)) < 0 ||
            (r = sd_bus_set_bus_client(bus, 1)) < 0 || (r = sd_bus_start(bus)) < 0)
                goto out;
        r = sd_bus_get_property_trivial(bus, "org.multichat.Chat1", "/org/multichat/Chat1",
                                        "org.multichat.Chat1.Manager", "Connections", &error, 'u', &n);
out:
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

static void json_idle_series(const Master *m, const ConnectResult *cr, const KernelSample *ks, unsigned n) {
        printf(", \"series\": [");
        for (unsigned i = 0; i < n; i++) {
                uint64_t prev = i ? cr[i - 1].open : 0;
                printf("%s{\"connections\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"seconds\": %.3f, "
                       "\"handshakes_per_s\": %.1f, \"rss_kb\": {\"daemon\": %" PRIu64 ", \"redis\": %" PRIu64
                       ", \"loadgen\": %" PRIu64 "}, \"cpu_us\": {\"daemon\": %" PRIu64 ", \"redis\": %" PRIu64 "}, ",
                       i ? ", " : "", cr[i].open, cr[i].failed, cr[i].seconds,
                       (double) (cr[i].open - prev) / cr[i].seconds, role_rss_kb(&cr[i].after, "daemon"),
                       role_rss_kb(&cr[i].after, "redis"), loadgen_rss_kb(m, &cr[i].after),
                       role_cpu_us(&cr[i].before, &cr[i].after, "daemon", false),
                       role_cpu_us(&cr[i].before, &cr[i].after, "redis", false));
                json_kernel("kernel", &ks[i]);
                printf("}");
        }
        printf("]");
}

static int scenario_idle(Master *m) {
        Snapshot base, held;
        KernelSample kbase, kheld, *ks = calloc(arg_idle_steps, sizeof(KernelSample));
        ConnectResult *cr = calloc(arg_idle_steps, sizeof(ConnectResult));
        uint64_t rss0, open = 0, lost;
        uint32_t counted[MAX_TARGETS] = {};
        int counted_r[MAX_TARGETS] = {};
        double open_s = 0;
        ProbeResult pr;

        if (!cr || !ks)
                die("out of memory");
        setup_logins(m);
        sleep_s(0.5);
        base = snapshot(m);
        kbase = kernel_sample();
        rss0 = role_rss_kb(&base, "daemon");
        for (unsigned i = 0; i < arg_idle_steps; i++) {
                uint64_t goal = (uint64_t) arg_connections * (i + 1) / arg_idle_steps;
                cr[i] = connect_members(m, goal);
                open_s += cr[i].seconds;
                /* Let the daemon finish what the handshakes started (Redis lookups, room lists). */
                sleep_s(1.0);
                cr[i].after = snapshot(m);
                ks[i] = kernel_sample();
                open = cr[i].open;
                note("%" PRIu64 " idle connections (%" PRIu64 " failed): daemon RSS %" PRIu64 " kB, %.0f handshakes/s, "
                     "slab +%" PRIu64 " kB",
                     cr[i].open, cr[i].failed, role_rss_kb(&cr[i].after, "daemon"),
                     (double) (cr[i].open - (i ? cr[i - 1].open : 0)) / cr[i].seconds,
                     ks[i].slab_kb > kbase.slab_kb ? ks[i].slab_kb - kbase.slab_kb : 0);
        }
        Snapshot a = snapshot(m);
        sleep_s(arg_idle_hold);
        held = snapshot(m);
        kheld = kernel_sample();
        for (unsigned i = 0; i < arg_n_check_buses; i++)
                counted_r[i] = bus_connections(arg_check_buses[i], &counted[i]);
        pr = probe(m, 60);
        lost = sum_shm(m, offsetof(WorkerShm, conns_lost));
        note("after %.1fs idle: %" PRIu64 " of %" PRIu64 " open members answered a ping (%.2fs); %" PRIu64 " lost",
             (double) (held.t - a.t) / 1e9, pr.answered, open, pr.seconds, lost);

        printf("{\"scenario\": \"idle\", \"label\": \"%s\", ", arg_label);
        json_params();
        printf(", \"baseline\": {\"rss_kb\": {\"daemon\": %" PRIu64 ", \"redis\": %" PRIu64
               ", \"loadgen\": %" PRIu64 "}, ",
               rss0, role_rss_kb(&base, "redis"), loadgen_rss_kb(m, &base));
        json_kernel("kernel", &kbase);
        printf("}");
        json_idle_series(m, cr, ks, arg_idle_steps);
        printf(", \"held\": {\"rss_kb\": {\"daemon\": %" PRIu64 ", \"redis\": %" PRIu64 ", \"loadgen\": %" PRIu64 "}, ",
               role_rss_kb(&held, "daemon"), role_rss_kb(&held, "redis"), loadgen_rss_kb(m, &held));
        json_kernel("kernel", &kheld);
        printf(", \"procs\": [");
        for (unsigned i = 0; i < arg_n_pids; i++)
                printf("%s{\"role\": \"%s\", \"pid\": %d, \"rss_kb\": %" PRIu64 "}", i ? ", " : "", arg_pids[i].role,
                       (int) arg_pids[i].pid, held.procs[i].rss_kb);
        printf("], \"daemon_connections\": [");
        for (unsigned i = 0; i < arg_n_check_buses; i++) {
                if (counted_r[i] < 0)
                        printf("%snull", i ? ", " : "");
                else
                        printf("%s%" PRIu32, i ? ", " : "", counted[i]);
        }
        printf("]}, \"setup_login_retries\": %" PRIu64 ", \"probe\": {\"sent\": %" PRIu64 ", \"answered\": %" PRIu64
               ", \"seconds\": %.3f, \"lost\": %" PRIu64 ", \"idle_s\": %.3f}",
               sum_shm(m, offsetof(WorkerShm, setup_login_retries)), pr.sent, pr.answered, pr.seconds, lost,
               (double) (held.t - a.t) / 1e9);

        double hold_s = (double) (held.t - a.t) / 1e9;
        uint64_t last_rss = role_rss_kb(&held, "daemon");
        double n = open ? (double) open : 1;
        printf(", \"summary\": {\"connections\": %" PRIu64 ", \"daemons\": %u, \"open_seconds\": %.3f, "
               "\"still_open\": %" PRIu64 ", \"daemon_rss_kb\": %" PRIu64 ", \"daemon_kb_per_conn\": %.3f, "
               "\"redis_kb_per_conn\": %.3f, \"loadgen_kb_per_conn\": %.3f, \"slab_kb_per_conn\": %.3f, "
               "\"socket_slab_kb_per_conn\": %.3f, \"sunreclaim_kb_per_conn\": %.3f, \"mem_used_kb_per_conn\": %.3f, "
               "\"tcp_mem_pages_delta\": %" PRId64
               ", \"sockets_used_delta\": %" PRId64 ", "
               "\"idle_cpu_us_per_s\": {\"daemon\": %.1f, \"redis\": %.1f}}}\n",
               open, m->p->n_targets, open_s, pr.answered, last_rss, open ? (double) (last_rss - rss0) / n : 0,
               open ? ((double) role_rss_kb(&held, "redis") - (double) role_rss_kb(&base, "redis")) / n : 0,
               open ? ((double) loadgen_rss_kb(m, &held) - (double) loadgen_rss_kb(m, &base)) / n : 0,
               open ? ((double) kheld.slab_kb - (double) kbase.slab_kb) / n : 0,
               open ? ((double) slab_caches_sum(&kheld) - (double) slab_caches_sum(&kbase)) / n : 0,
               open ? ((double) kheld.sunreclaim_kb - (double) kbase.sunreclaim_kb) / n : 0,
               open ? ((double) kheld.mem_used_kb - (double) kbase.mem_used_kb) / n : 0,
               (int64_t) kheld.tcp_mem_pages - (int64_t) kbase.tcp_mem_pages,
               (int64_t) kheld.sockets_used - (int64_t) kbase.sockets_used,
               (double) role_cpu_us(&a, &held, "daemon", false) / hold_s,
               (double) role_cpu_us(&a, &held, "redis", false) / hold_s);
        free(cr);
        free(ks);
        return 0;
}

static int scenario_login(Master *m) {
        static const struct {
                const char *label;
                bool right, wrong;
        } phases[] = {
                { "baseline", false, false },
                { "right-passwords", true, false },
                { "wrong-passwords", false, true },
                { "mixed", true, true },
        };
        StepRun runs[ELEMENTS(phases)] = {};
        ConnectResult cr;

        setup_logins(m);
        cr = connect_members(m, m->p->n_members);
        if (cr.open < m->p->n_members)
                die("only %" PRIu64 " of %u members could connect", cr.open, m->p->n_members);
        sleep_s(0.5);
        for (unsigned i = 0; i < ELEMENTS(phases); i++) {
                StepRun *r = &runs[i];
                r->k = i;
                r->label = phases[i].label;
                r->rate = arg_bg_rate;
                r->seconds = arg_step_seconds;
                run_step(m, r, phases[i].right ? arg_right_slots : 0, phases[i].wrong ? arg_wrong_slots : 0, 0);
                note("%s: background p99 %" PRIu64 " us; right logins %" PRIu64 " p99 %" PRIu64
                     " us; wrong %" PRIu64 " p50 %" PRIu64 " us",
                     r->label, hist_quantile(&r->s.lat, 0.99), r->s.op_lat[1].count, hist_quantile(&r->s.op_lat[1], 0.99),
                     r->s.op_lat[0].count, hist_quantile(&r->s.op_lat[0], 0.5));
        }
        printf("{\"scenario\": \"login\", \"label\": \"%s\", \"right_slots\": %u, \"wrong_slots\": %u, ", arg_label,
               arg_right_slots, arg_wrong_slots);
        json_params();
        printf(", ");
        json_connect("setup", m, &cr);
        printf(", \"steps\": [");
        for (unsigned i = 0; i < ELEMENTS(phases); i++) {
                if (i)
                        printf(", ");
                json_step(m, &runs[i]);
        }
        printf("]}\n");
        return 0;
}

static int scenario_reconnect(Master *m) {
        StepRun *runs = calloc(arg_n_rates, sizeof(StepRun));
        unsigned n = 0;

        if (!runs)
                die("out of memory");
        setup_logins(m);
        sleep_s(0.3);
        for (unsigned i = 0; i < arg_n_rates && i < SETUP_STEP; i++) {
                StepRun *r = &runs[n++];
                r->k = i;
                r->label = "slots";
                r->rate = 0;
                r->seconds = arg_step_seconds;
                run_step(m, r, 0, 0, (uint32_t) arg_rates[i]);
                note("%u in flight: %.0f handshakes/s, p50 %" PRIu64 " p99 %" PRIu64 " us, %" PRIu64 " failed",
                     (unsigned) arg_rates[i], (double) r->s.ops_ok / r->seconds, hist_quantile(&r->s.op_lat[0], 0.5),
                     hist_quantile(&r->s.op_lat[0], 0.99), r->s.ops_failed);
        }
        printf("{\"scenario\": \"reconnect\", \"label\": \"%s\", \"join\": %s, ", arg_label,
               arg_reconnect_join ? "true" : "false");
        json_params();
        printf(", \"steps\": [");
        for (unsigned i = 0; i < n; i++) {
                if (i)
                        printf(", ");
                printf("{\"in_flight\": %u, \"result\": ", (unsigned) arg_rates[i]);
                json_step(m, &runs[i]);
                printf("}");
        }
        printf("]}\n");
        free(runs);
        return 0;
}

static int create_rooms(void) {
        sd_bus *bus = NULL;
        int r;

        if (!arg_bus)
                die("--bus= is needed for create-rooms");
        if ((r = sd_bus_new(&bus)) < 0 || (r = sd_bus_set_address(bus, arg_bus)) < 0 ||
            (r = sd_bus_set_bus_client(bus, 1)) < 0 || (r = sd_bus_start(bus)) < 0)
                die("cannot connect to %s: %s", arg_bus, strerror(-r));
        for (unsigned i = 0; i < arg_count; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                const char *id, *path;
                char title[128];

                snprintf(title, sizeof(title), "%s %u", arg_title, i);
                r = sd_bus_call_method(bus, "org.multichat.Chat1", "/org/multichat/Chat1",
                                       "org.multichat.Chat1.Manager", "CreateRoom", &error, &reply, "sb", title, 0);
                if (r < 0)
                        die("CreateRoom: %s", error.message ? error.message : strerror(-r));
                r = sd_bus_message_read(reply, "so", &id, &path);
                if (r < 0)
                        die("CreateRoom reply: %s", strerror(-r));
                printf("%s\n", id);
                sd_bus_message_unref(reply);
        }
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* ---- options ---- */

static void help(void) {
        printf("mc-loadgen [OPTIONS...]\n\n"
               "Drives a running multichat stack through one scenario; JSON on stdout, progress on stderr.\n\n"
               "  --scenario=NAME          idle, chat, login, reconnect, storm, create-rooms\n"
               "  --target=ADDR:PORT       A daemon to talk to (repeatable: members alternate)\n"
               "  --workers=N              Worker processes (default 2)\n"
               "  --users=N                Accounts to log in first, numbered from 0 (default 100)\n"
               "  --user-format=PREFIX%%0Nd Account names: PREFIX and N digits (default u%%05d)\n"
               "  --password=PW            Their password (default pw)\n"
               "  --member-users=N         Members use the first N accounts round-robin (default: all)\n"
               "  --rooms=ID,...           Rooms (chat, login): member i joins room i / members\n"
               "  --rooms-file=PATH        Room ids, one a line\n"
               "  --members=N              Members per room (default 100)\n"
               "  --senders=N              Members per room that send (default 1)\n"
               "  --connections=N          Idle connections to open (idle)\n"
               "  --idle-steps=N           Open them in N steps, measuring memory after each (default 4)\n"
               "  --idle-hold=S            idle: hold them this long, then ping each once (default 3)\n"
               "  --check-bus=ADDRESS      idle: read Manager.Connections of the daemon on this bus (repeatable)\n"
               "  --rates=R,...            chat: messages/s offered, step by step; reconnect: attempts in flight\n"
               "  --step-seconds=S         Length of a step (default 2)\n"
               "  --stop-p99-ms=MS         chat: stop rising once p99 exceeds this (default 50)\n"
               "  --fixed                  chat: run every rate, whatever happens\n"
               "  --past-limit=N           chat: steps over the p99 limit before stopping (default 1)\n"
               "  --message-bytes=N        Length of a chat message's text (default 100)\n"
               "  --connect-concurrency=N  Handshakes in flight per worker (default 256)\n"
               "  --connect-timeout=S      Give up connecting the members after S seconds (default 600)\n"
               "  --bg-rate=R              login: background messages/s (default 200)\n"
               "  --right-slots=N          login: right-password logins in flight (default 8)\n"
               "  --wrong-slots=N          login: wrong-password logins in flight (default 100)\n"
               "  --login-user-base=N      login: storm slot j logs in as account N + j\n"
               "  --stagger=S              login: wrong-password slots start spread over S seconds (default 2)\n"
               "  --reconnect-join         reconnect: also join a room before closing\n"
               "  --away=N                 storm: messages per room sent while the members were away\n"
               "  --storm-timeout=S        storm: give up S seconds after the first drop (default 600)\n"
               "  --pid=ROLE:PID           Sample this process (ROLE daemon or redis; repeatable)\n"
               "  --label=TEXT             Copied into the JSON\n"
               "  --cpus=N,...             Run the workers on these CPUs only\n"
               "  --bus=ADDRESS --count=N --title=T   create-rooms: create N rooms, print their ids\n");
}

static unsigned parse_uint(const char *opt, const char *s, unsigned min, unsigned max) {
        char *e;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &e, 10);
        if (errno || e == s || *e || v < min || v > max)
                die("invalid %s=%s (%u…%u)", opt, s, min, max);
        return (unsigned) v;
}

static double parse_double(const char *opt, const char *s) {
        char *e;
        double v;

        errno = 0;
        v = strtod(s, &e);
        if (errno || e == s || *e || !(v >= 0) || isinf(v))
                die("invalid %s=%s", opt, s);
        return v;
}

static void add_target(const char *s) {
        Params *p = &arg_params;
        char host[64];
        const char *colon = strrchr(s, ':');
        struct sockaddr_in *a;

        if (p->n_targets >= MAX_TARGETS)
                die("too many targets");
        if (!colon || (size_t) (colon - s) >= sizeof(host))
                die("invalid --target=%s (ADDR:PORT)", s);
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = 0;
        a = &p->targets[p->n_targets];
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t) parse_uint("--target port", colon + 1, 1, 65535));
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                die("invalid --target=%s (numeric IPv4 address)", s);
        snprintf(p->target_host[p->n_targets], sizeof(p->target_host[0]), "%s", s);
        p->n_targets++;
}

static void add_room(const char *s, size_t len) {
        Params *p = &arg_params;
        char **a;

        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\r'))
                len--;
        if (len == 0)
                return;
        if (len > 20 || strspn(s, "0123456789") < len)
                die("invalid room id '%.*s'", (int) len, s);
        a = realloc(p->room_ids, sizeof(char *) * (p->n_rooms + 1));
        if (!a || !(a[p->n_rooms] = strndup(s, len)))
                die("out of memory");
        p->room_ids = a;
        p->n_rooms++;
}

static void parse_list(const char *s, void (*fn)(const char *, size_t)) {
        while (*s) {
                size_t l = strcspn(s, ",");
                fn(s, l);
                s += l;
                if (*s == ',')
                        s++;
        }
}

static void add_rate(const char *s, size_t len) {
        char buf[32];

        if (arg_n_rates >= MAX_RATES || len == 0 || len >= sizeof(buf))
                die("invalid --rates");
        memcpy(buf, s, len);
        buf[len] = 0;
        arg_rates[arg_n_rates++] = parse_double("--rates", buf);
}

static void parse_argv(int argc, char *argv[]) {
        enum {
                ARG_SCENARIO = 0x100, ARG_TARGET, ARG_WORKERS, ARG_USERS, ARG_USER_FORMAT, ARG_PASSWORD,
                ARG_MEMBER_USERS, ARG_ROOMS, ARG_ROOMS_FILE, ARG_MEMBERS, ARG_SENDERS, ARG_CONNECTIONS,
                ARG_IDLE_STEPS, ARG_RATES, ARG_STEP_SECONDS, ARG_STOP_P99, ARG_FIXED, ARG_MESSAGE_BYTES,
                ARG_CONNECT_CONCURRENCY, ARG_BG_RATE, ARG_RIGHT_SLOTS, ARG_WRONG_SLOTS, ARG_LOGIN_USER_BASE,
                ARG_RECONNECT_JOIN, ARG_PID, ARG_LABEL, ARG_BUS, ARG_COUNT, ARG_TITLE, ARG_IDLE_HOLD, ARG_PAST_LIMIT, ARG_CPUS, ARG_STAGGER,
                ARG_CHECK_BUS, ARG_AWAY, ARG_STORM_TIMEOUT, ARG_CONNECT_TIMEOUT,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "scenario", required_argument, NULL, ARG_SCENARIO },
                { "target", required_argument, NULL, ARG_TARGET },
                { "workers", required_argument, NULL, ARG_WORKERS },
                { "users", required_argument, NULL, ARG_USERS },
                { "user-format", required_argument, NULL, ARG_USER_FORMAT },
                { "password", required_argument, NULL, ARG_PASSWORD },
                { "member-users", required_argument, NULL, ARG_MEMBER_USERS },
                { "rooms", required_argument, NULL, ARG_ROOMS },
                { "rooms-file", required_argument, NULL, ARG_ROOMS_FILE },
                { "members", required_argument, NULL, ARG_MEMBERS },
                { "senders", required_argument, NULL, ARG_SENDERS },
                { "connections", required_argument, NULL, ARG_CONNECTIONS },
                { "idle-steps", required_argument, NULL, ARG_IDLE_STEPS },
                { "idle-hold", required_argument, NULL, ARG_IDLE_HOLD },
                { "rates", required_argument, NULL, ARG_RATES },
                { "step-seconds", required_argument, NULL, ARG_STEP_SECONDS },
                { "stop-p99-ms", required_argument, NULL, ARG_STOP_P99 },
                { "fixed", no_argument, NULL, ARG_FIXED },
                { "past-limit", required_argument, NULL, ARG_PAST_LIMIT },
                { "message-bytes", required_argument, NULL, ARG_MESSAGE_BYTES },
                { "connect-concurrency", required_argument, NULL, ARG_CONNECT_CONCURRENCY },
                { "bg-rate", required_argument, NULL, ARG_BG_RATE },
                { "right-slots", required_argument, NULL, ARG_RIGHT_SLOTS },
                { "wrong-slots", required_argument, NULL, ARG_WRONG_SLOTS },
                { "login-user-base", required_argument, NULL, ARG_LOGIN_USER_BASE },
                { "reconnect-join", no_argument, NULL, ARG_RECONNECT_JOIN },
                { "pid", required_argument, NULL, ARG_PID },
                { "label", required_argument, NULL, ARG_LABEL },
                { "cpus", required_argument, NULL, ARG_CPUS },
                { "stagger", required_argument, NULL, ARG_STAGGER },
                { "bus", required_argument, NULL, ARG_BUS },
                { "check-bus", required_argument, NULL, ARG_CHECK_BUS },
                { "count", required_argument, NULL, ARG_COUNT },
                { "title", required_argument, NULL, ARG_TITLE },
                { "away", required_argument, NULL, ARG_AWAY },
                { "storm-timeout", required_argument, NULL, ARG_STORM_TIMEOUT },
                { "connect-timeout", required_argument, NULL, ARG_CONNECT_TIMEOUT },
                {}
        };
        Params *p = &arg_params;
        unsigned login_user_base = UINT32_MAX;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case ARG_SCENARIO: {
                        unsigned i;
                        for (i = 0; i < ELEMENTS(scenario_names); i++)
                                if (strcmp(optarg, scenario_names[i]) == 0)
                                        break;
                        if (i == ELEMENTS(scenario_names))
                                die("unknown scenario '%s'", optarg);
                        arg_scenario = (Scenario) i;
                        break;
                }
                case ARG_TARGET: add_target(optarg); break;
                case ARG_WORKERS: p->n_workers = parse_uint("--workers", optarg, 1, 64); break;
                case ARG_USERS: p->n_users = parse_uint("--users", optarg, 1, 1000000); break;
                case ARG_USER_FORMAT: {
                        /* PREFIX%0Nd only: the name is built without a
                         * format string from the command line. */
                        const char *pct = strchr(optarg, '%');
                        char *e;
                        unsigned long width;
                        if (!pct || (size_t) (pct - optarg) >= sizeof(p->user_prefix) || pct[1] != '0')
                                die("invalid --user-format=%s (PREFIX%%0Nd)", optarg);
                        width = strtoul(pct + 2, &e, 10);
                        if (e == pct + 2 || width > 20 || strcmp(e, "d") != 0)
                                die("invalid --user-format=%s (PREFIX%%0Nd)", optarg);
                        memcpy(p->user_prefix, optarg, (size_t) (pct - optarg));
                        p->user_prefix[pct - optarg] = 0;
                        p->user_width = (unsigned) width;
                        break;
                }
                case ARG_PASSWORD:
                        if (strlen(optarg) >= sizeof(p->password) || strpbrk(optarg, "&=%+ "))
                                die("invalid --password (no &=%%+ or blanks, under 64 bytes)");
                        strcpy(p->password, optarg);
                        break;
                case ARG_MEMBER_USERS: p->n_member_users = parse_uint("--member-users", optarg, 1, 1000000); break;
                case ARG_ROOMS: parse_list(optarg, add_room); break;
                case ARG_ROOMS_FILE: {
                        FILE *f = fopen(optarg, "re");
                        char line[64];
                        if (!f)
                                die("%s: %m", optarg);
                        while (fgets(line, sizeof(line), f))
                                add_room(line, strlen(line));
                        fclose(f);
                        break;
                }
                case ARG_MEMBERS: p->members = parse_uint("--members", optarg, 1, 10000000); break;
                case ARG_SENDERS: p->senders = parse_uint("--senders", optarg, 0, 10000000); break;
                case ARG_CONNECTIONS: arg_connections = parse_uint("--connections", optarg, 1, 10000000); break;
                case ARG_IDLE_STEPS: arg_idle_steps = parse_uint("--idle-steps", optarg, 1, 100); break;
                case ARG_IDLE_HOLD: arg_idle_hold = parse_double("--idle-hold", optarg); break;
                case ARG_RATES: parse_list(optarg, add_rate); break;
                case ARG_STEP_SECONDS: arg_step_seconds = parse_double("--step-seconds", optarg); break;
                case ARG_STOP_P99: arg_stop_p99_ms = parse_double("--stop-p99-ms", optarg); break;
                case ARG_FIXED: arg_fixed = true; break;
                case ARG_AWAY: p->away = parse_uint("--away", optarg, 0, 1000); break;
                case ARG_STORM_TIMEOUT: arg_storm_timeout = parse_double("--storm-timeout", optarg); break;
                case ARG_CONNECT_TIMEOUT: arg_connect_timeout = parse_double("--connect-timeout", optarg); break;
                case ARG_PAST_LIMIT: arg_past_limit = parse_uint("--past-limit", optarg, 0, 100); break;
                case ARG_MESSAGE_BYTES: p->message_bytes = parse_uint("--message-bytes", optarg, 24, 4000); break;
                case ARG_CONNECT_CONCURRENCY:
                        p->connect_concurrency = parse_uint("--connect-concurrency", optarg, 1, 100000);
                        break;
                case ARG_BG_RATE: arg_bg_rate = parse_double("--bg-rate", optarg); break;
                case ARG_RIGHT_SLOTS: arg_right_slots = parse_uint("--right-slots", optarg, 0, 10000); break;
                case ARG_WRONG_SLOTS: arg_wrong_slots = parse_uint("--wrong-slots", optarg, 0, 10000); break;
                case ARG_LOGIN_USER_BASE:
                        login_user_base = parse_uint("--login-user-base", optarg, 0, 1000000);
                        break;
                case ARG_RECONNECT_JOIN: arg_reconnect_join = true; break;
                case ARG_PID: {
                        const char *colon = strchr(optarg, ':');
                        if (arg_n_pids >= MAX_PIDS || !colon || (size_t) (colon - optarg) >= sizeof(arg_pids[0].role))
                                die("invalid --pid=%s (ROLE:PID)", optarg);
                        memcpy(arg_pids[arg_n_pids].role, optarg, (size_t) (colon - optarg));
                        arg_pids[arg_n_pids].pid = (pid_t) parse_uint("--pid", colon + 1, 1, INT32_MAX);
                        arg_n_pids++;
                        break;
                }
                case ARG_LABEL: arg_label = optarg; break;
                case ARG_STAGGER: arg_stagger = parse_double("--stagger", optarg); break;
                case ARG_CPUS: {
                        char *copy = strdup(optarg), *save = NULL;
                        if (!copy)
                                die("out of memory");
                        CPU_ZERO(&arg_cpus);
                        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                                CPU_SET(parse_uint("--cpus", t, 0, CPU_SETSIZE - 1), &arg_cpus);
                        free(copy);
                        arg_pin = true;
                        break;
                }
                case ARG_BUS: arg_bus = optarg; break;
                case ARG_CHECK_BUS:
                        if (arg_n_check_buses >= MAX_TARGETS)
                                die("too many --check-bus=");
                        arg_check_buses[arg_n_check_buses++] = optarg;
                        break;
                case ARG_COUNT: arg_count = parse_uint("--count", optarg, 1, 1000000); break;
                case ARG_TITLE: arg_title = optarg; break;
                default:
                        exit(EXIT_FAILURE);
                }
        }
        if (optind < argc)
                die("unexpected argument '%s'", argv[optind]);
        if (arg_scenario == SCEN_CREATE_ROOMS)
                return;

        if (p->n_targets == 0)
                die("--target= is needed");
        if (p->n_member_users == 0 || p->n_member_users > p->n_users)
                p->n_member_users = p->n_users;
        if (p->senders > p->members)
                p->senders = p->members;
        switch (arg_scenario) {
        case SCEN_IDLE:
                p->n_members = arg_connections;
                p->n_rooms = 0;
                break;
        case SCEN_CHAT:
        case SCEN_LOGIN:
        case SCEN_STORM:
                if (p->n_rooms == 0)
                        die("--rooms= is needed");
                p->n_members = p->n_rooms * p->members;
                if (arg_scenario == SCEN_LOGIN) {
                        p->login_user_base = login_user_base != UINT32_MAX ? login_user_base : p->n_member_users;
                        if (p->login_user_base + arg_right_slots + arg_wrong_slots > p->n_users)
                                die("login storm slots need --users >= %u",
                                    p->login_user_base + arg_right_slots + arg_wrong_slots);
                        /* Storm accounts log in during the storm, not before. */
                        p->n_users = p->login_user_base;
                }
                if (arg_scenario == SCEN_CHAT && arg_n_rates == 0)
                        die("--rates= is needed");
                if (arg_scenario == SCEN_STORM) {
                        p->rejoin = true;
                        p->senders = 0;
                }
                break;
        case SCEN_RECONNECT:
                p->n_members = 0;
                if (arg_n_rates == 0)
                        die("--rates= (attempts in flight) is needed");
                break;
        default:
                break;
        }
}

int main(int argc, char *argv[]) {
        Master m = {};
        struct rlimit rl;
        int r;

        parse_argv(argc, argv);
        if (arg_scenario == SCEN_CREATE_ROOMS)
                return create_rooms() < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        /* Every connection is a descriptor here too. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
            rl.rlim_cur < arg_params.n_members / arg_params.n_workers + 1024)
                note("RLIMIT_NOFILE %llu is low for %u connections: raise it (ulimit -n)",
                     (unsigned long long) rl.rlim_cur, arg_params.n_members);
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);

        master_start(&m, &arg_params);
        switch (arg_scenario) {
        case SCEN_IDLE: r = scenario_idle(&m); break;
        case SCEN_CHAT: r = scenario_chat(&m); break;
        case SCEN_LOGIN: r = scenario_login(&m); break;
        case SCEN_RECONNECT: r = scenario_reconnect(&m); break;
        case SCEN_STORM: r = scenario_storm(&m); break;
        default: r = -EINVAL; break;
        }
        fflush(stdout);
        master_stop(&m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
