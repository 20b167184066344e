/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The floor under fan-out on this machine: one send() per member of fixed-size frames over loopback TCP, nothing else. */

/*
 * What the fastest possible server could do here with one send() per
 * delivery: a sender process writes each message (215 bytes, the size of
 * a chat event) to every one of --members loopback TCP sockets in turn, at
 * --rate messages per second on a fixed schedule; --receivers processes
 * read them and measure latency from the message's scheduled time (when a
 * server would have had it) to its arrival. No WebSocket, no JSON, no
 * Redis, no event loop on the sending side. Prints one line of JSON:
 * deliveries/s, sender CPU per delivery, p50/p99/max latency.
 */

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lg-stats.h"

#define RECORD 215

static unsigned arg_members = 1000;
static double arg_rate = 100;
static double arg_seconds = 5;
static unsigned arg_receivers = 2;

static void die(const char *what) {
        fprintf(stderr, "bare-fanout: %s: %s\n", what, strerror(errno));
        exit(EXIT_FAILURE);
}

/* Per receiving socket: how far into the current record, and its stamp. */
typedef struct Rx {
        int fd;
        unsigned off;
        unsigned char stamp[8];
} Rx;

static void receive(Rx *rx, unsigned n, uint64_t deadline, Hist *h) {
        unsigned char buf[65536];
        struct epoll_event ev[64];
        int ep = epoll_create1(0);

        if (ep < 0)
                die("epoll_create1");
        for (unsigned i = 0; i < n; i++) {
                struct epoll_event e = { .events = EPOLLIN, .data.ptr = &rx[i] };

                if (epoll_ctl(ep, EPOLL_CTL_ADD, rx[i].fd, &e) < 0)
                        die("epoll_ctl");
        }
        while (now_ns() < deadline) {
                int k = epoll_wait(ep, ev, 64, 100);

                for (int j = 0; j < k; j++) {
                        Rx *r = ev[j].data.ptr;
                        ssize_t got = read(r->fd, buf, sizeof buf);
                        uint64_t t = now_ns();

                        for (ssize_t p = 0; p < got; p++) {
                                if (r->off < 8)
                                        r->stamp[r->off] = buf[p];
                                if (++r->off == RECORD) {
                                        uint64_t sent;

                                        memcpy(&sent, r->stamp, 8);
                                        hist_add(h, t > sent ? (t - sent) / 1000 : 0);
                                        r->off = 0;
                                }
                        }
                }
        }
}

static int listen_loopback(struct sockaddr_in *ret) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) < 0 || listen(fd, 4096) < 0 ||
            getsockname(fd, (struct sockaddr *) &a, &len) < 0)
                die("listen");
        *ret = a;
        return fd;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "members", required_argument, NULL, 'm' },
                { "rate", required_argument, NULL, 'r' },
                { "seconds", required_argument, NULL, 's' },
                { "receivers", required_argument, NULL, 'R' },
                {}
        };
        struct sockaddr_in addr;
        unsigned char rec[RECORD];
        struct rusage ru0, ru1;
        int *srv, lfd, c, one = 1;
        Rx *rx;
        Hist *hists, all = {};
        uint64_t t0, sent = 0, cpu_us, msgs;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'm': arg_members = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'r': arg_rate = strtod(optarg, NULL); break;
                case 's': arg_seconds = strtod(optarg, NULL); break;
                case 'R': arg_receivers = (unsigned) strtoul(optarg, NULL, 10); break;
                default: return EXIT_FAILURE;
                }
        if (arg_members == 0 || arg_rate <= 0 || arg_seconds <= 0 || arg_receivers == 0)
                return EXIT_FAILURE;

        srv = calloc(arg_members, sizeof *srv);
        rx = calloc(arg_members, sizeof *rx);
        hists = mmap(NULL, arg_receivers * sizeof *hists, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (!srv || !rx || hists == MAP_FAILED)
                die("allocating");
        lfd = listen_loopback(&addr);
        for (unsigned i = 0; i < arg_members; i++) {
                rx[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (rx[i].fd < 0 || connect(rx[i].fd, (struct sockaddr *) &addr, sizeof addr) < 0)
                        die("connect");
                srv[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (srv[i] < 0)
                        die("accept");
                /* As a server sends events: no Nagle delay. */
                (void) setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }

        t0 = now_ns() + 200000000ULL;
        msgs = (uint64_t) (arg_rate * arg_seconds);
        for (unsigned k = 0; k < arg_receivers; k++) {
                pid_t pid = fork();

                if (pid < 0)
                        die("fork");
                if (pid == 0) {
                        unsigned from = arg_members * k / arg_receivers, to = arg_members * (k + 1) / arg_receivers;

                        receive(rx + from, to - from, t0 + (uint64_t) (arg_seconds * 1e9) + 2000000000ULL, &hists[k]);
                        _exit(EXIT_SUCCESS);
                }
        }

        memset(rec, 'x', sizeof rec);
        getrusage(RUSAGE_SELF, &ru0);
        for (uint64_t m = 0; m < msgs; m++) {
                uint64_t at = t0 + (uint64_t) ((double) m * 1e9 / arg_rate);
                struct timespec ts = { .tv_sec = (time_t) (at / 1000000000ULL), .tv_nsec = (long) (at % 1000000000ULL) };

                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                        ;
                memcpy(rec, &at, 8);
                for (unsigned i = 0; i < arg_members; i++) {
                        if (send(srv[i], rec, sizeof rec, 0) != (ssize_t) sizeof rec)
                                die("send");
                        sent++;
                }
        }
        getrusage(RUSAGE_SELF, &ru1);
        cpu_us = (uint64_t) ((ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000L +
                             (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec));
        while (wait(NULL) > 0)
                ;
        for (unsigned k = 0; k < arg_receivers; k++)
                hist_merge(&all, &hists[k]);
        printf("{\"members\": %u, \"rate\": %g, \"deliveries_per_s\": %.0f, \"sent\": %llu, \"received\": %llu, "
               "\"sender_us_per_delivery\": %.2f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}\n",
               arg_members, arg_rate, arg_rate * arg_members, (unsigned long long) sent, (unsigned long long) all.count,
               (double) cpu_us / (double) sent, hist_quantile(&all, 0.5) / 1000.0, hist_quantile(&all, 0.99) / 1000.0,
               all.max_us / 1000.0);
        return all.count == sent ? EXIT_SUCCESS : EXIT_FAILURE;
}
