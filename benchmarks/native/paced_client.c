/* paced_client: keeps N SSE streams open through a target and times every event.
 *
 *   paced_client --port P --request FILE --streams N --ramp-s R --hold-s D
 *                --interval-us U --events MIN:MAX --terminator FILE --out FILE
 *                [--offsets FILE] [--text-hash HEX] [--timeout-s T]
 *
 * Connection i sends its first request at R * i / N (starts spread over one stream's
 * length), and each connection sends its next request as soon as a stream ends, until
 * R + D; then the streams still open finish. Measured in the window [R, R + D), when all
 * N are open: per upstream event, arrival - the send time the upstream scheduled for it
 * (the `: t=` comment line: t0 + i * interval for event i; the event a rewriting policy
 * re-wrote without its stamp is found by text offset: --offsets; when a policy merged
 * events, each one counts, arriving with the event that completes it), and per stamped
 * event, arrival - the time of the upstream's write (` w=` in the same line); per stream
 * started in the window, TTFB (request written -> first body byte). Every stream is
 * checked: HTTP 200, an event count in MIN..MAX, the body ending with the terminator,
 * the text's hash (--text-hash).
 * Prints `ramped` at R and `held` at R + D (the caller samples CPU then), and the
 * figures as JSON to --out.
 */
#include "stream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

enum { C_IDLE, C_CONNECTING, C_SENDING, C_READING, C_DONE };

typedef struct {
    int fd, state;
    size_t req_off;
    int64_t deadline, retry_at;
    resp_t resp;
} conn_t;

static run_t run;
static conn_t *conns;
static int n_conns, n_done, ep, port = 0;
static char *request;
static size_t request_len;
static int64_t timeout_us = 120000000;
static struct sockaddr_in addr;

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void conn_open(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    c->deadline = now_us() + timeout_us;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        run_error(&run, E_CONNECT, "%s", strerror(errno));
        close(c->fd);
        c->state = C_IDLE;
        c->retry_at = now_us() + 100000;
        return;
    }
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Ends the connection; a stream cut short counts as `kind` (when >= 0). Reopens it
 * while the hold lasts. */
static void conn_end(conn_t *c, int kind, const char *why) {
    if (kind >= 0) {
        run_error(&run, kind, "%s", why);
        run.bad++;
    }
    close(c->fd);
    c->fd = -1;
    int64_t now = now_us();
    c->state = now < run.t_hold ? C_IDLE : C_DONE;
    n_done += c->state == C_DONE;
    c->retry_at = kind >= 0 ? now + 100000 : now;
}

static void send_request(conn_t *c) {
    while (c->req_off < request_len) {
        ssize_t w = write(c->fd, request + c->req_off, request_len - c->req_off);
        if (w < 0 && errno == EAGAIN) {
            watch(c, EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
        if (w < 0) {
            conn_end(c, E_CLOSED, "request write failed");
            return;
        }
        c->req_off += (size_t)w;
    }
    int64_t now = now_us();
    resp_reset(&c->resp, now);
    c->state = C_READING;
    c->deadline = now + timeout_us;
    watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void start_stream(conn_t *c) {
    run.started++;
    c->req_off = 0;
    c->state = C_SENDING;
    send_request(c);
}

static void on_complete(conn_t *c) {
    resp_finish(&run, &c->resp);
    if (c->resp.close_after || now_us() >= run.t_hold) conn_end(c, -1, NULL);
    else start_stream(c);
}

static void on_readable(conn_t *c) {
    static char buf[1 << 16];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) {
            if (resp_eof(&c->resp)) {
                resp_finish(&run, &c->resp);
                conn_end(c, -1, NULL);
            } else {
                conn_end(c, E_CLOSED, r < 0 ? strerror(errno) : "connection closed mid-stream");
            }
            return;
        }
        int done = resp_feed(&run, &c->resp, buf, (size_t)r, now_us());
        if (!done && (size_t)r < sizeof buf) return; /* drained: epoll says when more comes */
        if (done < 0) {
            run.bad++;
            conn_end(c, -1, NULL);
            return;
        }
        if (done) {
            on_complete(c); /* nothing is pipelined behind a response */
            return;
        }
    }
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            run_error(&run, E_CONNECT, "%s", strerror(err));
            conn_end(c, -1, NULL);
        } else {
            start_stream(c);
        }
    } else if (c->state == C_SENDING && events & EPOLLOUT) {
        send_request(c);
    } else if (c->state == C_READING) {
        on_readable(c);
    }
}

/* Every 10 ms: streams past their deadline, connections to open again. */
static void sweep(int64_t now) {
    for (int i = 0; i < n_conns; i++) {
        conn_t *c = &conns[i];
        if (c->state == C_IDLE && c->retry_at && c->retry_at <= now) {
            if (now < run.t_hold) {
                conn_open(c);
            } else {
                c->state = C_DONE;
                n_done++;
            }
        } else if (c->state != C_IDLE && c->state != C_DONE && now > c->deadline) {
            conn_end(c, E_TIMEOUT, "no complete response in time");
        }
    }
}

static int64_t *read_offsets(const char *path, size_t *n) {
    size_t len;
    char *text = read_file(path, &len), *p = text;
    int64_t *out = NULL;
    *n = 0;
    for (char *end; (void)(end = NULL), *p; p = end) {
        long long v = strtoll(p, &end, 10);
        if (end == p) break;
        out = xrealloc(out, (*n + 1) * sizeof *out);
        out[(*n)++] = v;
    }
    free(text);
    return out;
}

static void write_json(const char *path, double ramp_s, double hold_s) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    char delay[300], written[300], ttfb[300], dur[300];
    samples_json(&run.delay, "delay_us", delay, sizeof delay);
    samples_json(&run.from_write, "from_write_us", written, sizeof written);
    samples_json(&run.ttfb, "ttfb_us", ttfb, sizeof ttfb);
    samples_json(&run.stream_dur, "stream_us", dur, sizeof dur);
    FILE *f = fopen(path, "w");
    if (!f) die("%s: %s", path, strerror(errno));
    fprintf(f, "{\"streams\": %d, \"ramp_s\": %.3f, \"hold_s\": %.3f, \"cpu_s\": %.3f,\n", n_conns,
            ramp_s, hold_s, cpu);
    fprintf(f, " \"started\": %llu, \"ok\": %llu, \"bad\": %llu, \"errors\": {",
            (unsigned long long)run.started, (unsigned long long)run.ok, (unsigned long long)run.bad);
    for (int k = 0; k < E_KINDS; k++)
        fprintf(f, "%s\"%s\": %llu", k ? ", " : "", ERROR_NAMES[k], (unsigned long long)run.errors[k]);
    fprintf(f, "},\n %s,\n \"error_samples\": [", dur);
    for (int k = 0; k < run.n_samples; k++) {
        fputs(k ? ", \"" : "\"", f);
        for (const char *s = run.samples[k]; *s; s++) {
            if (*s == '"' || *s == '\\') fputc('\\', f);
            if ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f) fputc(*s, f);
            else fprintf(f, "\\\\x%02x", (unsigned char)*s);
        }
        fputc('"', f);
    }
    fprintf(f, "],\n \"window\": {\"events\": %llu, \"upstream_events\": %llu, \"stamped\": %llu, "
               "\"by_text\": %llu, \"unmeasured\": %llu, \"streams\": %llu,\n  %s,\n  %s,\n  %s}}\n",
            (unsigned long long)run.win_events, (unsigned long long)run.win_upstream,
            (unsigned long long)run.win_stamped, (unsigned long long)run.win_by_text,
            (unsigned long long)run.win_unmeasured, (unsigned long long)run.win_streams, delay, written,
            ttfb);
    fclose(f);
}

int main(int argc, char **argv) {
    double ramp_s = 1, hold_s = 5;
    const char *out = NULL;
    run.interval = 20000;
    run.events_max = 1 << 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--request")) request = read_file(v, &request_len);
        else if (!strcmp(k, "--streams")) n_conns = atoi(v);
        else if (!strcmp(k, "--ramp-s")) ramp_s = atof(v);
        else if (!strcmp(k, "--hold-s")) hold_s = atof(v);
        else if (!strcmp(k, "--timeout-s")) timeout_us = (int64_t)(atof(v) * 1e6);
        else if (!strcmp(k, "--interval-us")) run.interval = atoll(v);
        else if (!strcmp(k, "--events")) sscanf(v, "%d:%d", &run.events_min, &run.events_max);
        else if (!strcmp(k, "--terminator")) run.terminator = read_file(v, &run.term_len);
        else if (!strcmp(k, "--offsets")) run.offsets = read_offsets(v, &run.n_offsets);
        else if (!strcmp(k, "--text-hash")) run.text_hash = strtoull(v, NULL, 16);
        else if (!strcmp(k, "--out")) out = v;
        else die("unknown option %s", k);
    }
    if (!port || !request || n_conns <= 0 || !out || !run.terminator || run.interval <= 0)
        die("usage: %s --port P --request FILE --streams N --terminator FILE --out FILE "
            "[--ramp-s R] [--hold-s D] [--interval-us U] [--events MIN:MAX] [--offsets FILE] "
            "[--text-hash HEX] [--timeout-s T]", argv[0]);
    raise_nofile();
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake when asked, not up to 50 us later */
    addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ep = epoll_create1(0);
    conns = calloc((size_t)n_conns, sizeof *conns);
    if (!conns) die("out of memory");
    int64_t t_start = now_us(), next_sweep = t_start;
    run.t_ramp = t_start + (int64_t)(ramp_s * 1e6);
    run.t_hold = run.t_ramp + (int64_t)(hold_s * 1e6);
    int opened = 0, ramped = 0, held = 0;
    struct epoll_event evs[512];
    for (;;) {
        int64_t now = now_us();
        while (opened < n_conns && t_start + (int64_t)(ramp_s * 1e6) * opened / n_conns <= now)
            conn_open(&conns[opened++]);
        if (!ramped && now >= run.t_ramp) ramped = puts("ramped") >= 0 && fflush(stdout) == 0;
        if (!held && now >= run.t_hold) held = puts("held") >= 0 && fflush(stdout) == 0;
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + 10000;
        }
        if (held && n_done == n_conns) break;
        int64_t wake = next_sweep;
        if (opened < n_conns) {
            int64_t t = t_start + (int64_t)(ramp_s * 1e6) * opened / n_conns;
            wake = t < wake ? t : wake;
        }
        int64_t mark = ramped ? run.t_hold : run.t_ramp;
        if (!held && mark < wake) wake = mark;
        int n = wait_events(ep, evs, 512, wake > now ? wake - now : 0);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    write_json(out, ramp_s, hold_s);
    puts("done");
    return 0;
}
