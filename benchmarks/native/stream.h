/* One streamed response as paced_client reads it: HTTP/1.1 head, chunked (or sized)
 * body, SSE events timed on arrival, and the checks of a complete stream. */
#ifndef PACED_STREAM_H
#define PACED_STREAM_H

#include "common.h"

enum { E_CONNECT, E_CLOSED, E_TIMEOUT, E_MALFORMED, E_STATUS, E_EVENTS, E_TERMINATOR, E_TEXT, E_KINDS };

/* What every stream is checked against, and what the whole run measured. */
typedef struct {
    int64_t interval;      /* us between the upstream's events */
    int64_t t_ramp, t_hold; /* the measured window: [t_ramp, t_hold) */
    int events_min, events_max;
    const char *terminator; /* what a complete body ends with */
    size_t term_len;
    int64_t *offsets; /* text bytes the client has after upstream event i */
    size_t n_offsets;
    uint64_t text_hash; /* FNV-1a of all text deltas' (JSON-escaped) text; 0: unchecked */
    samples_t delay, from_write, ttfb; /* in the window: per event, per stream started */
    samples_t stream_dur;              /* every correct stream: request written -> last byte */
    uint64_t started, ok, bad, errors[E_KINDS];
    uint64_t win_events, win_upstream, win_stamped, win_by_text, win_unmeasured, win_streams;
    char samples[5][240];
    int n_samples;
} run_t;

typedef struct {
    int status, chunked, close_after, cst, in_ext, head_done, have_t0;
    int64_t clen_left, chunk_left, trailer_line;
    char head[8192];
    size_t head_len;
    char *ev; /* body bytes of the event being read */
    size_t ev_len, ev_cap;
    char tail[160]; /* the body's last bytes */
    size_t tail_len;
    int events;
    int64_t t_sent, t_first, t_last, t0, last_k;
    size_t text_len;
    uint64_t hash;
} resp_t;

extern const char *const ERROR_NAMES[E_KINDS];

void run_error(run_t *run, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void resp_reset(resp_t *r, int64_t t_sent);
/* Bytes read at `now`: 1 once the response is complete, 0 for more, -1 malformed. */
int resp_feed(run_t *run, resp_t *r, const char *p, size_t n, int64_t now);
/* The connection closed: 1 if that ends a body sent until close. */
int resp_eof(resp_t *r);
/* A complete response: checks it, counts it. */
void resp_finish(run_t *run, resp_t *r);

#endif
