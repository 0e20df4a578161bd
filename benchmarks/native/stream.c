/* One streamed response as paced_client reads it (see stream.h). */
#include "stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const ERROR_NAMES[E_KINDS] = {"connect", "closed",     "timeout", "malformed",
                                          "status",  "event_count", "terminator", "text"};

enum { CS_SIZE, CS_DATA, CS_CRLF, CS_TRAILER, CS_END };

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
static const char STAMP[] = ": t=";
static const char TEXT_KEY[] = "\"text_delta\",\"text\":\"";

void run_error(run_t *run, int kind, const char *fmt, ...) {
    run->errors[kind]++;
    if (run->n_samples == 5) return;
    char *out = run->samples[run->n_samples++];
    int n = snprintf(out, sizeof run->samples[0], "%s: ", ERROR_NAMES[kind]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, sizeof run->samples[0] - (size_t)n, fmt, ap);
    va_end(ap);
}

void resp_reset(resp_t *r, int64_t t_sent) {
    char *ev = r->ev;
    size_t cap = r->ev_cap;
    memset(r, 0, offsetof(resp_t, head)); /* the fields before the buffers */
    r->head_len = r->ev_len = r->tail_len = 0;
    r->ev = ev;
    r->ev_cap = cap;
    r->events = 0;
    r->t_sent = t_sent;
    r->t_first = r->t_last = r->t0 = 0;
    r->last_k = -1;
    r->text_len = 0;
    r->hash = FNV_OFFSET;
}

static int in_window(const run_t *run, int64_t t) { return t >= run->t_ramp && t < run->t_hold; }

/* The first upstream event after which the client holds `text_len` bytes of text. */
static int64_t event_of_text(const run_t *run, size_t text_len) {
    size_t lo = 0, hi = run->n_offsets;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (run->offsets[mid] < (int64_t)text_len) lo = mid + 1;
        else hi = mid;
    }
    return lo < run->n_offsets ? (int64_t)lo : -1;
}

/* One complete SSE event (its bytes up to and including the blank line). */
static void on_event(run_t *run, resp_t *r, const char *e, size_t n, int64_t now) {
    r->events++;
    int64_t stamp = -1, written = -1, k = -1;
    const char *s = n >= 20 && !memcmp(e, STAMP, 4) ? e : memmem(e, n, "\n: t=", 5);
    if (s) {
        char *end;
        s += (*s == '\n') + 4;
        stamp = strtoll(s, &end, 10);
        if (!strncmp(end, " w=", 3)) written = strtoll(end + 3, NULL, 10);
    }
    const char *t = memmem(e, n, TEXT_KEY, sizeof TEXT_KEY - 1);
    if (t) { /* a text delta: its text counts and goes into the hash as it is on the wire */
        const char *end = e + n;
        for (t += sizeof TEXT_KEY - 1; t < end && *t != '"'; t++) {
            if (*t == '\\' && t + 1 < end) {
                r->hash = (r->hash ^ (uint8_t)*t++) * FNV_PRIME;
                r->text_len++;
            }
            r->hash = (r->hash ^ (uint8_t)*t) * FNV_PRIME;
            r->text_len++;
        }
    }
    if (stamp >= 0) {
        if (!r->have_t0) { /* the first event (message_start) is event 0 */
            r->have_t0 = 1;
            r->t0 = stamp;
        }
        k = (stamp - r->t0 + run->interval / 2) / run->interval;
    } else if (t && r->have_t0 && run->n_offsets) {
        /* Rewritten text lost its stamp: it is due when the upstream sent its last byte. */
        k = event_of_text(run, r->text_len);
        if (k >= 0) stamp = r->t0 + k * run->interval;
    }
    int64_t first = r->last_k + 1; /* upstream events this one completes: first..k */
    if (k > r->last_k) r->last_k = k;
    if (!in_window(run, now)) return;
    run->win_events++;
    if (k < 0) {
        run->win_unmeasured++;
        return;
    }
    if (s) run->win_stamped++;
    else run->win_by_text++;
    if (written >= 0) samples_add(&run->from_write, now - written);
    if (k < first) { /* an event behind a later one: its own delay */
        samples_add(&run->delay, now - stamp);
        return;
    }
    /* Every upstream event whose content arrives now (several when a policy merged
     * them): each one's delay, from its own scheduled time. */
    run->win_upstream += (uint64_t)(k - first + 1);
    for (int64_t j = first; j <= k; j++) samples_add(&run->delay, now - (r->t0 + j * run->interval));
}

static void body_data(run_t *run, resp_t *r, const char *p, size_t n, int64_t now) {
    if (!n) return;
    if (!r->t_first) r->t_first = now;
    r->t_last = now;
    if (n >= sizeof r->tail) { /* keep the body's last bytes for the terminator check */
        memcpy(r->tail, p + n - sizeof r->tail, sizeof r->tail);
        r->tail_len = sizeof r->tail;
    } else {
        size_t keep = r->tail_len + n > sizeof r->tail ? sizeof r->tail - n : r->tail_len;
        memmove(r->tail, r->tail + r->tail_len - keep, keep);
        memcpy(r->tail + keep, p, n);
        r->tail_len = keep + n;
    }
    if (r->ev_len + n > r->ev_cap) r->ev = xrealloc(r->ev, r->ev_cap = (r->ev_len + n) * 2 + 4096);
    size_t scan = r->ev_len ? r->ev_len - 1 : 0, start = 0;
    memcpy(r->ev + r->ev_len, p, n);
    r->ev_len += n;
    char *hit;
    while ((hit = memmem(r->ev + scan, r->ev_len - scan, "\n\n", 2))) {
        size_t end = (size_t)(hit - r->ev) + 2;
        on_event(run, r, r->ev + start, end - start, now);
        start = scan = end;
    }
    if (start) {
        memmove(r->ev, r->ev + start, r->ev_len - start);
        r->ev_len -= start;
    }
}

static int parse_head(run_t *run, resp_t *r) {
    r->head[r->head_len] = 0;
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) {
        run_error(run, E_MALFORMED, "status line %.60s", r->head);
        return -1;
    }
    r->clen_left = -1; /* until the connection closes, unless told otherwise */
    for (char *h = strstr(r->head, "\r\n"); h; h = strstr(h + 2, "\r\n")) {
        if (!strncasecmp(h + 2, "transfer-encoding:", 18) && strstr(h + 20, "chunked"))
            r->chunked = 1;
        else if (!strncasecmp(h + 2, "content-length:", 15)) r->clen_left = atoll(h + 17);
        else if (!strncasecmp(h + 2, "connection:", 11) && strstr(h + 13, "close"))
            r->close_after = 1;
    }
    if (!r->chunked && r->clen_left < 0) r->close_after = 1;
    r->head_done = 1;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int resp_feed(run_t *run, resp_t *r, const char *p, size_t n, int64_t now) {
    while (!r->head_done && n) {
        if (r->head_len == sizeof r->head - 1) {
            run_error(run, E_MALFORMED, "response head over %zu bytes", sizeof r->head);
            return -1;
        }
        r->head[r->head_len++] = *p++;
        n--;
        if (r->head_len >= 4 && !memcmp(r->head + r->head_len - 4, "\r\n\r\n", 4) && parse_head(run, r) < 0)
            return -1;
    }
    if (!r->head_done) return 0;
    if (!r->chunked) {
        size_t take = r->clen_left >= 0 && (int64_t)n > r->clen_left ? (size_t)r->clen_left : n;
        body_data(run, r, p, take, now);
        if (r->clen_left >= 0) r->clen_left -= (int64_t)take;
        return r->clen_left == 0;
    }
    while (n && r->cst != CS_END) {
        char c = *p;
        if (r->cst == CS_DATA) {
            size_t take = (int64_t)n < r->chunk_left ? n : (size_t)r->chunk_left;
            body_data(run, r, p, take, now);
            p += take;
            n -= take;
            if (!(r->chunk_left -= (int64_t)take)) r->cst = CS_CRLF;
            continue;
        }
        p++;
        n--;
        if (r->cst == CS_SIZE) {
            if (c == '\n') {
                r->cst = r->chunk_left ? CS_DATA : CS_TRAILER;
                r->in_ext = 0;
                r->trailer_line = 0;
            } else if (c == ';') r->in_ext = 1;
            else if (c != '\r' && !r->in_ext) {
                if (hexval(c) < 0 || r->chunk_left > (1LL << 40)) {
                    run_error(run, E_MALFORMED, "bad chunk size byte 0x%02x", (unsigned char)c);
                    return -1;
                }
                r->chunk_left = r->chunk_left * 16 + hexval(c);
            }
        } else if (r->cst == CS_CRLF) {
            if (c == '\n') r->cst = CS_SIZE;
        } else if (c == '\n') { /* CS_TRAILER: an empty line ends the response */
            if (!r->trailer_line) r->cst = CS_END;
            r->trailer_line = 0;
        } else if (c != '\r') r->trailer_line++;
    }
    return r->cst == CS_END;
}

int resp_eof(resp_t *r) { return r->head_done && !r->chunked && r->clen_left < 0; }

void resp_finish(run_t *run, resp_t *r) {
    int bad = 1;
    const char *tail = r->tail + r->tail_len - (r->tail_len < run->term_len ? r->tail_len : run->term_len);
    if (r->status != 200) {
        int len = r->tail_len > 120 ? 120 : (int)r->tail_len;
        run_error(run, E_STATUS, "status %d, body ends %.*s", r->status, len, r->tail + r->tail_len - (size_t)len);
    } else if (r->events < run->events_min || r->events > run->events_max)
        run_error(run, E_EVENTS, "%d events, expected %d..%d", r->events, run->events_min, run->events_max);
    else if (r->tail_len < run->term_len || memcmp(tail, run->terminator, run->term_len))
        run_error(run, E_TERMINATOR, "body ends %.60s", tail);
    else if (run->text_hash && r->hash != run->text_hash)
        run_error(run, E_TEXT, "text differs (%zu bytes, hash %016llx)", r->text_len,
                  (unsigned long long)r->hash);
    else bad = 0;
    if (bad) {
        run->bad++;
        return;
    }
    run->ok++;
    samples_add(&run->stream_dur, r->t_last - r->t_sent);
    if (in_window(run, r->t_sent)) {
        run->win_streams++;
        samples_add(&run->ttfb, r->t_first - r->t_sent);
    }
}
