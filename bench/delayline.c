/*
 * delayline: a userspace WAN link between two network namespaces (no netem here).
 *
 * Creates one TUN device in each namespace (setns before open: a TUN belongs to the
 * namespace of the process that opened /dev/net/tun), then forwards every IP packet
 * read from one to the other after holding it `delay_us`. With a rate (bytes/s > 0)
 * each direction also serialises packets like a bottleneck link with a buffer of one
 * bandwidth-delay product; what overflows it is lost and counted apart from drops
 * caused by the forwarder itself (a full ring), which must stay at zero. Optionally
 * each packet is lost at random (LOSS_PPM, parts per million, from a seeded PRNG so a
 * run can be repeated) and held up to JITTER_US longer (uniform), never overtaking the
 * packet before it: a long link that loses packets without reordering them.
 *
 * usage: delayline NS_A NS_B IFNAME DELAY_US RATE_BYTES_PER_S MTU STATS_FILE
 *                  [LOSS_PPM JITTER_US SEED]
 * Prints "ready" once both devices exist; runs until SIGTERM/SIGINT. The TUN devices
 * are not persistent: they vanish when this process exits. Counters are rewritten to
 * STATS_FILE (one JSON line) every 0.5 s and at exit.
 *
 * Single-threaded: one ppoll loop; each direction is a FIFO ring of fixed slots, so
 * packets leave in order at (arrival + delay), or later when serialisation queues them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (64u << 20) /* per direction; 40 ms at 1.6 GB/s with 64 KiB packets */
#define READ_BURST 64          /* packets read per wake-up before flushing due ones */

struct slot {
    uint64_t due_ns;
    uint32_t len;
};

struct dir {
    int in_fd, out_fd;
    unsigned char *buf; /* nslots * (sizeof(struct slot) + mtu) */
    uint32_t nslots, head, count;
    uint64_t free_at_ns;  /* when the serialising "wire" is next idle */
    /* overflow: lost at the rate cap's full buffer (by design, like a real bottleneck);
     * dropped/write_errors: the forwarder itself failed to keep up (must stay 0). */
    uint64_t packets, bytes, overflow, dropped, write_errors, max_queue;
    uint64_t lost;        /* the random loss asked for (LOSS_PPM) */
    uint64_t last_due_ns; /* jitter never reorders: no packet leaves before this */
};

static volatile sig_atomic_t stop;
static uint32_t slot_size, mtu;
static uint64_t loss_ppm, jitter_ns, rng_state;

/* xorshift64*: fast, and the same sequence for the same seed */
static uint64_t next_random(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct slot *slot_at(struct dir *d, uint32_t i) {
    return (struct slot *)(d->buf + (size_t)(i % d->nslots) * slot_size);
}

static int open_tun(const char *ns, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        perror(path);
        exit(1);
    }
    close(nsfd);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        perror("/dev/net/tun");
        exit(1);
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI; /* bare IP packets, no offload metadata */
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        perror("TUNSETIFF");
        exit(1);
    }
    return fd;
}

/* Read what is waiting (bounded), stamping each packet with its departure time. */
static void pull(struct dir *d, uint64_t delay_ns, uint64_t rate) {
    for (int n = 0; n < READ_BURST; n++) {
        unsigned char scratch[65536];
        int full = d->count == d->nslots;
        struct slot *s = slot_at(d, d->head + d->count);
        unsigned char *dst = full ? scratch : (unsigned char *)(s + 1);
        ssize_t len = read(d->in_fd, dst, mtu);
        if (len <= 0)
            return; /* EAGAIN: drained */
        uint64_t now = now_ns(), due = now + delay_ns;
        if (rate) {
            uint64_t start = d->free_at_ns > now ? d->free_at_ns : now;
            /* Buffer of one BDP: a packet that would wait longer than 2*delay is lost. */
            if (start - now > 2 * delay_ns) {
                d->overflow++;
                continue;
            }
            d->free_at_ns = start + (uint64_t)len * 1000000000u / rate;
            due = d->free_at_ns + delay_ns;
        }
        /* Lost on the way, after taking its time on the wire, as on a real link. */
        if (loss_ppm && next_random() % 1000000u < loss_ppm) {
            d->lost++;
            continue;
        }
        if (jitter_ns)
            due += next_random() % (jitter_ns + 1);
        if (due < d->last_due_ns)
            due = d->last_due_ns;
        d->last_due_ns = due;
        if (full) {
            d->dropped++;
            continue;
        }
        s->due_ns = due;
        s->len = (uint32_t)len;
        d->count++;
        if (d->count > d->max_queue)
            d->max_queue = d->count;
    }
}

/* Write every packet whose time has come; return the next due time (0: none queued). */
static uint64_t push(struct dir *d, uint64_t now) {
    while (d->count) {
        struct slot *s = slot_at(d, d->head);
        if (s->due_ns > now)
            return s->due_ns;
        if (write(d->out_fd, s + 1, s->len) != (ssize_t)s->len)
            d->write_errors++;
        d->packets++;
        d->bytes += s->len;
        d->head = (d->head + 1) % d->nslots;
        d->count--;
    }
    return 0;
}

static void write_stats(const char *path, struct dir *d) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "{\"directions\": [");
    for (int i = 0; i < 2; i++)
        fprintf(f,
                "%s{\"packets\": %llu, \"bytes\": %llu, \"overflow\": %llu, \"dropped\": %llu, "
                "\"write_errors\": %llu, \"max_queue\": %llu, \"lost\": %llu}",
                i ? ", " : "", (unsigned long long)d[i].packets,
                (unsigned long long)d[i].bytes, (unsigned long long)d[i].overflow,
                (unsigned long long)d[i].dropped,
                (unsigned long long)d[i].write_errors, (unsigned long long)d[i].max_queue,
                (unsigned long long)d[i].lost);
    fprintf(f, "]}\n");
    fclose(f);
    rename(tmp, path);
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 11) {
        fprintf(stderr,
                "usage: %s NS_A NS_B IFNAME DELAY_US RATE MTU STATS_FILE "
                "[LOSS_PPM JITTER_US SEED]\n",
                argv[0]);
        return 2;
    }
    if (argc == 11) {
        loss_ppm = strtoull(argv[8], NULL, 10);
        jitter_ns = strtoull(argv[9], NULL, 10) * 1000u;
        rng_state = strtoull(argv[10], NULL, 10) | 1u; /* xorshift needs a nonzero state */
        if (loss_ppm > 1000000u) {
            fprintf(stderr, "LOSS_PPM must be 0..1000000\n");
            return 2;
        }
    }
    uint64_t delay_ns = strtoull(argv[4], NULL, 10) * 1000u;
    uint64_t rate = strtoull(argv[5], NULL, 10);
    mtu = (uint32_t)strtoul(argv[6], NULL, 10);
    const char *stats = argv[7];
    if (mtu < 576 || mtu > 65535) {
        fprintf(stderr, "MTU must be 576..65535\n");
        return 2;
    }
    slot_size = (uint32_t)((sizeof(struct slot) + mtu + 15) & ~15u);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd_a = open_tun(argv[1], argv[3]);
    int fd_b = open_tun(argv[2], argv[3]);
    struct dir d[2] = {{.in_fd = fd_a, .out_fd = fd_b}, {.in_fd = fd_b, .out_fd = fd_a}};
    for (int i = 0; i < 2; i++) {
        d[i].nslots = RING_BYTES / slot_size;
        d[i].buf = malloc((size_t)d[i].nslots * slot_size);
        if (!d[i].buf) {
            perror("malloc");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);

    uint64_t next_stats = 0;
    while (!stop) {
        uint64_t now = now_ns();
        if (now >= next_stats) {
            write_stats(stats, d);
            next_stats = now + 500000000u;
        }
        uint64_t wake = next_stats;
        for (int i = 0; i < 2; i++) {
            uint64_t due = push(&d[i], now);
            if (due && due < wake)
                wake = due;
        }
        now = now_ns();
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        struct pollfd pfd[2] = {{fd_a, POLLIN, 0}, {fd_b, POLLIN, 0}};
        int ready = ppoll(pfd, 2, &ts, NULL);
        if (ready < 0 && errno != EINTR) {
            perror("ppoll");
            break;
        }
        for (int i = 0; i < 2 && ready > 0; i++)
            if (pfd[i].revents & POLLIN)
                pull(&d[i], delay_ns, rate);
    }
    write_stats(stats, d);
    return 0;
}
