/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The load generator's counters: latency histograms, per-step statistics shared by workers, /proc samples. */

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lg-stats.h"

const char *const close_names[_CLOSE_MAX] = {
        [CLOSE_1000] = "1000", [CLOSE_1001] = "1001", [CLOSE_1008] = "1008", [CLOSE_1009] = "1009",
        [CLOSE_1011] = "1011", [CLOSE_1013] = "1013", [CLOSE_4001] = "4001", [CLOSE_OTHER] = "other",
        [CLOSE_ABRUPT] = "abrupt",
};

const char *const error_names[_ERR_MAX] = {
        [ERR_RATE_LIMITED] = "RATE_LIMITED",
        [ERR_UNAVAILABLE] = "UNAVAILABLE",
        [ERR_USER_HAS_TO_LOGIN] = "USER_HAS_TO_LOGIN",
        [ERR_ROOM_INVALID] = "ROOM_INVALID",
        [ERR_ROOM_ACCESS_DENIED] = "ROOM_ACCESS_DENIED",
        [ERR_BAD_REQUEST] = "BAD_REQUEST",
        [ERR_MESSAGE_TOO_LONG] = "MESSAGE_TOO_LONG",
        [ERR_OTHER] = "other",
};

const char *const http_names[_HTTP_MAX] = {
        [HTTP_303] = "303", [HTTP_401] = "401", [HTTP_403] = "403", [HTTP_429] = "429",
        [HTTP_OTHER] = "other", [HTTP_FAILED] = "failed",
};

static unsigned hist_index(uint64_t v) {
        unsigned e, shift, i;

        if (v < HIST_SUB)
                return (unsigned) v;
        e = 63u - (unsigned) __builtin_clzll(v);
        if (e > HIST_MAX_EXP)
                return HIST_BUCKETS - 1;
        shift = e - HIST_SUB_BITS;
        i = (shift + 1) * HIST_SUB + (unsigned) ((v >> shift) - HIST_SUB);
        return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The largest value that falls into bucket i. */
static uint64_t hist_upper(unsigned i) {
        unsigned shift;

        if (i < HIST_SUB)
                return i;
        shift = i / HIST_SUB - 1;
        return (((uint64_t) (i % HIST_SUB + HIST_SUB) + 1) << shift) - 1;
}

void hist_add(Hist *h, uint64_t us) {
        h->b[hist_index(us)]++;
        h->count++;
        h->sum_us += us;
        if (us > h->max_us)
                h->max_us = us;
}

void hist_merge(Hist *into, const Hist *from) {
        for (unsigned i = 0; i < HIST_BUCKETS; i++)
                into->b[i] += from->b[i];
        into->count += from->count;
        into->sum_us += from->sum_us;
        if (from->max_us > into->max_us)
                into->max_us = from->max_us;
}

uint64_t hist_quantile(const Hist *h, double q) {
        uint64_t rank, seen = 0;

        if (h->count == 0)
                return 0;
        rank = (uint64_t) (q * (double) h->count);
        if (rank >= h->count)
                rank = h->count - 1;
        for (unsigned i = 0; i < HIST_BUCKETS; i++) {
                seen += h->b[i];
                if (seen > rank) {
                        uint64_t u = hist_upper(i);
                        return u < h->max_us ? u : h->max_us;
                }
        }
        return h->max_us;
}

uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

uint64_t proc_ticks_to_us(uint64_t ticks) {
        long hz = sysconf(_SC_CLK_TCK);
        return ticks * 1000000ULL / (uint64_t) (hz > 0 ? hz : 100);
}

static int read_small(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return -1;
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        buf[n] = 0;
        return (int) n;
}

static uint64_t sched_ns_sum(pid_t pid) {
        char path[64], buf[128];
        uint64_t sum = 0;
        DIR *d;
        struct dirent *de;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char p[300];
                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int) pid, de->d_name);
                if (read_small(p, buf, sizeof(buf)) > 0)
                        sum += strtoull(buf, NULL, 10);
        }
        closedir(d);
        return sum;
}

ProcSample proc_sample(pid_t pid) {
        char path[64], buf[4096];
        ProcSample s = {};
        const char *p;
        unsigned long long utime, stime;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        if (read_small(path, buf, sizeof(buf)) <= 0)
                return s;
        /* comm may hold spaces and parentheses: the fields start after the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return s;
        s.cpu_ticks = utime + stime;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        if (read_small(path, buf, sizeof(buf)) > 0 && (p = strstr(buf, "\nVmRSS:")))
                s.rss_kb = strtoull(p + 7, NULL, 10);
        s.sched_ns = sched_ns_sum(pid);
        s.ok = true;
        return s;
}

HostSample host_sample(void) {
        char buf[512];
        HostSample h = {};
        unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;

        if (read_small("/proc/stat", buf, sizeof(buf)) <= 0 ||
            sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait, &irq,
                   &softirq, &steal) != 8)
                return h;
        h.busy_ticks = user + nice + system + irq + softirq;
        h.steal_ticks = steal;
        h.ok = true;
        return h;
}

const char *const slab_names[_SLAB_MAX] = {
        [SLAB_TCP] = "TCP", [SLAB_SOCK_INODE] = "sock_inode_cache", [SLAB_FILP] = "filp",
        [SLAB_DENTRY] = "dentry", [SLAB_EPOLL] = "eventpoll_epi",
};

static uint64_t meminfo_kb(const char *buf, const char *key) {
        const char *p = strstr(buf, key);
        return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* The caches every socket of ours allocates from: the socket itself, its
 * inode, its file, its dentry, its epoll registration. */
static void slab_caches(uint64_t out_kb[static _SLAB_MAX]) {
        FILE *f = fopen("/proc/slabinfo", "re");
        char line[512];

        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                char name[64];
                unsigned long long active, total, size;
                if (sscanf(line, "%63s %llu %llu %llu", name, &active, &total, &size) != 4)
                        continue;
                for (unsigned i = 0; i < _SLAB_MAX; i++)
                        if (strcmp(name, slab_names[i]) == 0)
                                out_kb[i] = active * size / 1024;
        }
        fclose(f);
}

KernelSample kernel_sample(void) {
        char buf[8192];
        KernelSample k = {};
        const char *p;

        if (read_small("/proc/meminfo", buf, sizeof(buf)) <= 0)
                return k;
        k.mem_used_kb = meminfo_kb(buf, "MemTotal:") - meminfo_kb(buf, "\nMemFree:");
        k.slab_kb = meminfo_kb(buf, "\nSlab:");
        k.sunreclaim_kb = meminfo_kb(buf, "\nSUnreclaim:");
        if (read_small("/proc/net/sockstat", buf, sizeof(buf)) <= 0)
                return k;
        if ((p = strstr(buf, "sockets: used ")))
                k.sockets_used = strtoull(p + 14, NULL, 10);
        if ((p = strstr(buf, "TCP: inuse ")))
                k.tcp_inuse = strtoull(p + 11, NULL, 10);
        if ((p = strstr(buf, "TCP: ")) && (p = strstr(p, " mem ")))
                k.tcp_mem_pages = strtoull(p + 5, NULL, 10);
        slab_caches(k.slab_cache_kb);
        k.ok = true;
        return k;
}
