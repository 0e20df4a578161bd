/* paced_upstream: an HTTP/1.1 upstream that sends each SSE event on its own schedule.
 *
 *   paced_upstream --port P [--interval-us 20000] --route /v1/messages=FILE [--route ...]
 *
 * FILE holds one stream's events, each ending with a blank line ("\n\n"). A POST to a
 * route's path (request body read and ignored) gets `200 text/event-stream`, chunked:
 * event 0 at once, event i at start + i * interval, each in its own writev as one HTTP
 * chunk, with a comment line in front of its bytes: `: t=<scheduled send time> w=<time
 * of the write>`, both microseconds since the epoch (CLOCK_REALTIME), 16 digits each.
 * Events due within SLACK_US of each other go out in one wake-up. `GET /stats` answers how late the writes were (a histogram since the last
 * `GET /stats?reset`, which clears it). One thread, epoll, a binary heap of due times.
 */
#include "common.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_ROUTES 8
#define IN_CAP 65536
#define STAMP_LEN 35 /* "<16 digits> w=<16 digits>" */
#define SLACK_US 50

typedef struct {
    char path[256];
    size_t n;
    struct iovec *head; /* per event: "<chunk size hex>\r\n: t=" */
    struct iovec *tail; /* per event: "\n<event>\r\n", the last one + "0\r\n\r\n" */
} route_t;

enum { ST_HEAD, ST_BODY, ST_STREAM };

typedef struct conn {
    int fd, state, heap_i, chunked;
    route_t *route;
    size_t next; /* next event to send */
    int64_t start, due, body_left;
    char in[IN_CAP];
    size_t in_len;
    char *out; /* bytes the socket did not take yet */
    size_t out_len, out_cap;
} conn_t;

static route_t routes[MAX_ROUTES];
static int n_routes, ep;
static int64_t interval = 20000;
static conn_t **heap;
static size_t heap_n, heap_cap;
/* Lateness of writes (actual - scheduled): 10 us buckets below 1 ms, 1 ms to 100 ms. */
static uint64_t late_hist[201], events_sent, streams_started, streams_done, open_conns;
static int64_t late_max;

static const char HEADERS[] =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

static void load_route(const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof routes[0].path || n_routes == MAX_ROUTES)
        die("bad --route %s (want /path=file)", spec);
    route_t *r = &routes[n_routes++];
    memcpy(r->path, spec, (size_t)(eq - spec));
    size_t len;
    char *data = read_file(eq + 1, &len);
    for (size_t pass = 0; pass < 2; pass++) { /* count, then fill */
        size_t i = 0, pos = 0;
        while (pos < len) {
            char *end = strstr(data + pos, "\n\n");
            size_t elen = end ? (size_t)(end - (data + pos)) + 2 : len - pos;
            if (pass) {
                char head[64], *tail = xrealloc(NULL, elen + 8);
                size_t body = 4 + STAMP_LEN + 1 + elen; /* ": t=" stamp "\n" event */
                int hl = snprintf(head, sizeof head, "%zx\r\n: t=", body);
                r->head[i].iov_base = memcpy(xrealloc(NULL, (size_t)hl), head, (size_t)hl);
                r->head[i].iov_len = (size_t)hl;
                tail[0] = '\n';
                memcpy(tail + 1, data + pos, elen);
                memcpy(tail + 1 + elen, "\r\n", 2);
                r->tail[i].iov_base = tail;
                r->tail[i].iov_len = elen + 3;
            }
            pos += elen;
            i++;
        }
        if (!pass) {
            if (!i) die("%s: no events", eq + 1);
            r->n = i;
            r->head = xrealloc(NULL, i * sizeof *r->head);
            r->tail = xrealloc(NULL, i * sizeof *r->tail);
        }
    }
    struct iovec *last = &r->tail[r->n - 1];
    last->iov_base = xrealloc(last->iov_base, last->iov_len + 5);
    memcpy((char *)last->iov_base + last->iov_len, "0\r\n\r\n", 5);
    last->iov_len += 5;
    free(data);
}

/* -- the schedule: a binary min-heap of streams by due time ---------------------------- */

static void heap_swap(size_t a, size_t b) {
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_i = (int)a;
    heap[b]->heap_i = (int)b;
}

static void heap_up(size_t i) {
    while (i && heap[(i - 1) / 2]->due > heap[i]->due) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap[l]->due < heap[m]->due) m = l;
        if (r < heap_n && heap[r]->due < heap[m]->due) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn_t *c) {
    if (heap_n == heap_cap) heap = xrealloc(heap, (heap_cap = heap_cap ? heap_cap * 2 : 1024) * sizeof *heap);
    heap[heap_n] = c;
    c->heap_i = (int)heap_n++;
    heap_up(heap_n - 1);
}

static void heap_remove(conn_t *c) {
    size_t i = (size_t)c->heap_i;
    c->heap_i = -1;
    if (i != --heap_n) {
        heap[i] = heap[heap_n];
        heap[i]->heap_i = (int)i;
        heap_down(i);
        heap_up(i);
    }
}

/* -- connections ------------------------------------------------------------------------ */

static void conn_close(conn_t *c) {
    if (c->heap_i >= 0) heap_remove(c);
    close(c->fd); /* also leaves the epoll set */
    free(c->out);
    free(c);
    open_conns--;
}

static void want_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes iov in order after what is still queued; 0 on success, -1: connection gone. */
static int send_iov(conn_t *c, struct iovec *iov, int n) {
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (!c->out_len) {
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0 && errno != EAGAIN) return -1;
        done = w < 0 ? 0 : (size_t)w;
        if (done == total) return 0;
        want_out(c, 1);
    }
    if (c->out_len + total - done > c->out_cap) {
        c->out_cap = (c->out_len + total) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    for (int i = 0; i < n; i++) { /* the part not written yet */
        size_t len = iov[i].iov_len, skip = done < len ? done : len;
        done -= skip;
        memcpy(c->out + c->out_len, (char *)iov[i].iov_base + skip, len - skip);
        c->out_len += len - skip;
    }
    return 0;
}

static int flush_out(conn_t *c) {
    ssize_t w = write(c->fd, c->out, c->out_len);
    if (w < 0) return errno == EAGAIN ? 0 : -1;
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (size_t)w;
    if (!c->out_len) want_out(c, 0);
    return 0;
}

/* Sends the stream's next event (with the headers before event 0); -1: connection gone. */
static int send_event(conn_t *c) {
    route_t *r = c->route;
    size_t i = c->next++;
    char stamp[STAMP_LEN + 1];
    int64_t now = now_us();
    snprintf(stamp, sizeof stamp, "%016lld w=%016lld", (long long)c->due, (long long)now);
    struct iovec iov[4];
    int n = 0;
    if (i == 0) iov[n++] = (struct iovec){(void *)HEADERS, sizeof HEADERS - 1};
    iov[n++] = r->head[i];
    iov[n++] = (struct iovec){stamp, STAMP_LEN};
    iov[n++] = r->tail[i];
    int64_t late = now - c->due;
    late_hist[late < 0 ? 0 : late < 1000 ? late / 10 : late < 100000 ? 99 + late / 1000 : 200]++;
    if (late > late_max) late_max = late;
    events_sent++;
    if (send_iov(c, iov, n) < 0) return -1;
    if (c->next == r->n) { /* done: ready for the next request */
        c->state = ST_HEAD;
        streams_done++;
        return 0;
    }
    c->due = c->start + (int64_t)c->next * interval;
    heap_push(c);
    return 0;
}

static int64_t late_pct(double q) {
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < 201; i++) total += late_hist[i];
    for (int i = 0; i < 201 && total; i++) {
        seen += late_hist[i];
        if ((double)seen >= q / 100.0 * (double)total)
            return i < 100 ? (i + 1) * 10 : i < 200 ? (i - 98) * 1000 : late_max;
    }
    return 0;
}

static int answer_stats(conn_t *c, int reset) {
    char body[512], head[128];
    int bl = snprintf(body, sizeof body,
                      "{\"streams_started\": %llu, \"streams_done\": %llu, \"events\": %llu, "
                      "\"open_connections\": %llu, \"late_us\": {\"p50\": %lld, \"p99\": %lld, "
                      "\"p999\": %lld, \"max\": %lld}}\n",
                      (unsigned long long)streams_started, (unsigned long long)streams_done,
                      (unsigned long long)events_sent, (unsigned long long)open_conns,
                      (long long)late_pct(50), (long long)late_pct(99), (long long)late_pct(99.9),
                      (long long)late_max);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n", bl);
    if (reset) {
        memset(late_hist, 0, sizeof late_hist);
        late_max = 0;
    }
    struct iovec iov[2] = {{head, (size_t)hl}, {body, (size_t)bl}};
    return send_iov(c, iov, 2);
}

/* A complete request (head and body read): start its stream or answer it. */
static int on_request(conn_t *c, const char *line) {
    char method[16], path[512];
    if (sscanf(line, "%15s %511s", method, path) != 2) return -1;
    if (!strncmp(path, "/stats", 6)) return answer_stats(c, strstr(path, "reset") != NULL);
    for (int i = 0; i < n_routes; i++) {
        if (strcmp(path, routes[i].path)) continue;
        c->route = &routes[i];
        c->next = 0;
        c->start = c->due = now_us();
        c->state = ST_STREAM;
        streams_started++;
        return send_event(c);
    }
    static const char nf[] = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    return send_iov(c, &(struct iovec){(void *)nf, sizeof nf - 1}, 1);
}

static void consume(conn_t *c, size_t n) {
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Parses what was read; -1: close the connection. */
static int process_input(conn_t *c) {
    static char line[600];
    for (;;) {
        if (c->state == ST_STREAM) return 0; /* the next request waits for this stream */
        if (c->state == ST_HEAD) {
            char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!end) return c->in_len == IN_CAP ? -1 : 0;
            *end = 0;
            size_t ll = strcspn(c->in, "\r"); /* the request line */
            ll = ll < sizeof line ? ll : sizeof line - 1;
            memcpy(line, c->in, ll);
            line[ll] = 0;
            c->body_left = 0;
            c->chunked = 0;
            for (char *h = strstr(c->in, "\r\n"); h; h = strstr(h + 2, "\r\n")) {
                if (!strncasecmp(h + 2, "content-length:", 15)) c->body_left = atoll(h + 17);
                if (!strncasecmp(h + 2, "transfer-encoding:", 18) && strstr(h + 20, "chunked"))
                    c->chunked = 1;
            }
            consume(c, (size_t)(end - c->in) + 4);
            c->state = ST_BODY;
        }
        if (c->chunked) { /* a JSON body never holds CR LF: the last chunk is found so */
            char *end = c->in_len >= 5 && !memcmp(c->in, "0\r\n\r\n", 5)
                            ? c->in
                            : memmem(c->in, c->in_len, "\r\n0\r\n\r\n", 7);
            if (!end) {
                if (c->in_len > 7) consume(c, c->in_len - 7);
                return 0;
            }
            consume(c, (size_t)(end - c->in) + (end == c->in && c->in[0] == '0' ? 5 : 7));
        } else {
            size_t take = c->body_left < (int64_t)c->in_len ? (size_t)c->body_left : c->in_len;
            consume(c, take);
            c->body_left -= (int64_t)take;
            if (c->body_left) return 0;
        }
        c->state = ST_HEAD;
        if (on_request(c, line) < 0) return -1;
    }
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->in_len == IN_CAP) break; /* a huge request head, or pipelining: unsupported */
        ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) break;
        c->in_len += (size_t)r;
        if (process_input(c) < 0) break;
    }
    conn_close(c);
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--interval-us") && i + 1 < argc) interval = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--route") && i + 1 < argc) load_route(argv[++i]);
        else die("usage: %s --port P [--interval-us U] --route /path=events.sse ...", argv[0]);
    }
    if (!n_routes || interval <= 0) die("need --route and a positive --interval-us");
    raise_nofile();
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake when asked, not up to 50 us later */
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0)
        die("listen on port %d: %s", port, strerror(errno));
    set_nonblock(lfd);
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening on 127.0.0.1:%d, %d routes, %lld us between events\n", port, n_routes,
           (long long)interval);
    fflush(stdout);
    struct epoll_event evs[512];
    for (;;) {
        int64_t now = now_us();
        while (heap_n && heap[0]->due <= now + SLACK_US) {
            conn_t *c = heap[0];
            heap_remove(c);
            if (send_event(c) < 0) conn_close(c);
            else if (c->state == ST_HEAD && process_input(c) < 0) conn_close(c);
        }
        int n = wait_events(ep, evs, 512, heap_n ? heap[0]->due - now : -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) { /* the listener */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) die("out of memory");
                    c->fd = fd;
                    c->heap_i = -1;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                    open_conns++;
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT && flush_out(c) < 0) {
                conn_close(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
