/* Shared helpers of the paced-stream benchmark tools (paced_upstream, paced_client). */
#ifndef PACED_COMMON_H
#define PACED_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

/* Wall-clock microseconds (CLOCK_REALTIME): the upstream stamps events with it and the
 * client compares arrivals with it, both on the same machine. */
static inline int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void *xrealloc(void *ptr, size_t size);
/* The whole file, NUL-terminated (the NUL is not counted in *len). */
char *read_file(const char *path, size_t *len);
/* Soft RLIMIT_NOFILE up to the hard limit: 1,024 streams need more than the default. */
void raise_nofile(void);
void set_nonblock(int fd);
/* epoll_wait with a microsecond timeout (epoll_pwait2 where the C library and kernel
 * have it, else milliseconds rounded up); timeout_us < 0 waits forever. */
int wait_events(int ep, struct epoll_event *evs, int max, int64_t timeout_us);

/* Growable array of int64 samples, and its percentiles. */
typedef struct {
    int64_t *v;
    size_t n, cap;
} samples_t;

void samples_add(samples_t *s, int64_t value);
void samples_sort(samples_t *s);
int64_t samples_pct(const samples_t *s, double q); /* of sorted samples */
/* Sorts, then writes `"name": {"count": n, "p50": .., "p90": .., "p99": .., "p999": .., "max": .., "mean": ..}` */
void samples_json(samples_t *s, const char *name, char *out, size_t size);

#endif
