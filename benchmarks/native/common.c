/* Shared helpers of the paced-stream benchmark tools. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void *xrealloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) die("out of memory (%zu bytes)", size);
    return p;
}

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xrealloc(NULL, cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) buf = xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

void set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl: %s", strerror(errno));
}

int wait_events(int ep, struct epoll_event *evs, int max, int64_t timeout_us) {
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
    static int no_pwait2;
    if (!no_pwait2) {
        struct timespec ts = {timeout_us / 1000000, (timeout_us % 1000000) * 1000};
        int n = epoll_pwait2(ep, evs, max, timeout_us < 0 ? NULL : &ts, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        no_pwait2 = 1; /* an older kernel: milliseconds below */
    }
#endif
#endif
    int ms = timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000);
    return epoll_wait(ep, evs, max, ms);
}

void samples_add(samples_t *s, int64_t value) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = value;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void samples_sort(samples_t *s) {
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp64);
}

int64_t samples_pct(const samples_t *s, double q) {
    if (!s->n) return 0;
    size_t i = (size_t)(q / 100.0 * (double)(s->n - 1) + 0.5);
    return s->v[i < s->n ? i : s->n - 1];
}

void samples_json(samples_t *s, const char *name, char *out, size_t size) {
    samples_sort(s);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += (double)s->v[i];
    int64_t p50 = samples_pct(s, 50), p90 = samples_pct(s, 90), p99 = samples_pct(s, 99);
    int64_t p999 = samples_pct(s, 99.9), max = s->n ? s->v[s->n - 1] : 0;
    snprintf(out, size,
             "\"%s\": {\"count\": %zu, \"p50\": %lld, \"p90\": %lld, \"p99\": %lld, "
             "\"p999\": %lld, \"max\": %lld, \"mean\": %.1f}",
             name, s->n, (long long)p50, (long long)p90, (long long)p99, (long long)p999,
             (long long)max, s->n ? sum / (double)s->n : 0.0);
}
