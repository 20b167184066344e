/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The load generator's counters: latency histograms, per-step statistics shared by workers, /proc samples. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Log-linear histogram of microseconds: 32 sub-buckets per power of two,
 * so a percentile is within ~3 % of the true value; 2^27 µs (134 s) at
 * most. */
#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 27
#define HIST_BUCKETS ((HIST_MAX_EXP - HIST_SUB_BITS + 2) * HIST_SUB)

typedef struct Hist {
        uint32_t b[HIST_BUCKETS];
        uint64_t count;
        uint64_t sum_us;
        uint64_t max_us;
} Hist;

void hist_add(Hist *h, uint64_t us);
void hist_merge(Hist *into, const Hist *from);
/* The value at quantile q (0..1): the upper edge of its bucket, capped at the maximum. */
uint64_t hist_quantile(const Hist *h, double q);

/* What a close frame or a dropped socket said, and error events by code. */
enum {
        CLOSE_1000, CLOSE_1001, CLOSE_1008, CLOSE_1009, CLOSE_1011, CLOSE_1013, CLOSE_4001,
        CLOSE_OTHER, CLOSE_ABRUPT, _CLOSE_MAX,
};
enum {
        ERR_RATE_LIMITED, ERR_UNAVAILABLE, ERR_USER_HAS_TO_LOGIN, ERR_ROOM_INVALID, ERR_ROOM_ACCESS_DENIED,
        ERR_BAD_REQUEST, ERR_MESSAGE_TOO_LONG, ERR_OTHER, _ERR_MAX,
};
extern const char *const close_names[_CLOSE_MAX];
extern const char *const error_names[_ERR_MAX];

/* HTTP answers to logins, by class. */
enum { HTTP_303, HTTP_401, HTTP_403, HTTP_429, HTTP_OTHER, HTTP_FAILED, _HTTP_MAX };
extern const char *const http_names[_HTTP_MAX];

/* One step of a scenario as one worker saw it. Message counters are by
 * the step the message was sent in (its text says which), so a delivery
 * that arrives late still counts for its step. */
typedef struct StepStats {
        uint64_t sent;                  /* chat messages written */
        uint64_t expected;              /* sum of the sending room's members over those messages */
        uint64_t received;              /* deliveries of this step's messages */
        uint64_t last_recv_ns;          /* CLOCK_MONOTONIC of the latest such delivery */
        uint64_t other_frames;          /* presence, room lists, acks, ... */
        uint64_t errors[_ERR_MAX];      /* error events that arrived during the step */
        uint64_t closes[_CLOSE_MAX];    /* connections ended during the step */
        uint64_t ops_ok;                /* handshakes (reconnect) or successful logins */
        uint64_t ops_failed;
        uint64_t http[2][_HTTP_MAX];    /* logins: [right password][answer] */
        Hist lat;                       /* send → delivery */
        Hist op_lat[2];                 /* handshake, or login POST→answer [wrong, right] */
} StepStats;

#define MAX_STEPS 24

typedef struct WorkerShm {
        pid_t pid;
        uint64_t conns_open;            /* members connected, session confirmed, rooms joined */
        uint64_t conns_failed;
        uint64_t conns_lost;            /* of those open, ended since (by either side) */
        uint64_t probes_sent;           /* CMD_PROBE: pings written to open members */
        uint64_t probes_answered;       /* and their pongs */
        uint64_t slots_busy;            /* login / reconnect attempts in flight */
        uint64_t setup_logins_failed;
        uint64_t setup_login_retries;   /* right passwords refused once, then tried again */
        /* storm: members that reconnect after their connection dropped */
        uint64_t storm_rejoined;        /* back in their room: the join answered */
        uint64_t storm_caught_up;       /* of those, whose join brought every message sent while away */
        uint64_t storm_replayed;        /* messages sent while away that the joins brought back */
        uint64_t storm_attempts;        /* reconnect attempts started */
        uint64_t storm_retries;         /* attempts that ended before the join answered, tried again */
        Hist storm_lat;                 /* drop → join answered, per member */
        StepStats steps[MAX_STEPS];
} WorkerShm;

/* The stack's processes, sampled from /proc. */
typedef struct ProcSample {
        uint64_t cpu_ticks;             /* utime + stime, all threads (/proc/PID/stat) */
        uint64_t sched_ns;              /* sum of /proc/PID/task/ * /schedstat run time: finer */
        uint64_t rss_kb;                /* VmRSS */
        bool ok;
} ProcSample;

ProcSample proc_sample(pid_t pid);

/* The whole machine (/proc/stat): busy and stolen time over all CPUs, so
 * that what other processes took during a step can be told apart. */
typedef struct HostSample {
        uint64_t busy_ticks;            /* user + nice + system + irq + softirq */
        uint64_t steal_ticks;
        bool ok;
} HostSample;

HostSample host_sample(void);
uint64_t proc_ticks_to_us(uint64_t ticks);

/* The kernel's side of holding sockets (/proc/meminfo, /proc/net/sockstat,
 * /proc/slabinfo), machine-wide: both ends of a loopback connection count,
 * and so does anything else running meanwhile. */
enum { SLAB_TCP, SLAB_SOCK_INODE, SLAB_FILP, SLAB_DENTRY, SLAB_EPOLL, _SLAB_MAX };
extern const char *const slab_names[_SLAB_MAX];

typedef struct KernelSample {
        uint64_t mem_used_kb;           /* MemTotal - MemFree: everything, caches included */
        uint64_t slab_kb;               /* Slab (reclaimable and not) */
        uint64_t sunreclaim_kb;
        uint64_t sockets_used;          /* sockstat "sockets: used" */
        uint64_t tcp_inuse;
        uint64_t tcp_mem_pages;         /* pages held by TCP socket buffers */
        uint64_t slab_cache_kb[_SLAB_MAX];      /* active objects × object size; 0 when slabinfo is unreadable */
        bool ok;
} KernelSample;

KernelSample kernel_sample(void);

uint64_t now_ns(void);
