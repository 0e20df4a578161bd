"""What the ext_proc server and the Envoy bootstrap must agree on, defined once.

The server (`server.py`, `pipeline/`) and the renderer (`envoy_config/`) both import
these; nothing else spells them. Which error format a path gets is the dialect
registry's rule (`dialects/registry.py`), rendered into Envoy's local-reply mappers.
"""

from __future__ import annotations

# -- headers --------------------------------------------------------------------------

# Envoy routes on this header; the gateway always sets it itself (and removes a
# client's), so a client cannot pick a cluster by sending it.
UPSTREAM_HEADER = "x-gateway-upstream"
# Removed by Envoy on the way to a provider: ext_proc must see plain SSE, not gzip, and
# the routing header stays inside Envoy.
HEADERS_NOT_FORWARDED = ("accept-encoding", UPSTREAM_HEADER)
# Envoy's own control headers (x-envoy-retry-on, -max-retries, timeouts,
# x-envoy-original-path...) are not a client's to send: ext_proc removes them, which
# Envoy allows with `mutation_rules: {allow_envoy: true}`.
ENVOY_HEADER_PREFIX = "x-envoy-"
# Where Envoy keeps the client's path after a provider's prefix_rewrite.
ORIGINAL_PATH_HEADER = "x-envoy-original-path"

# -- clusters -------------------------------------------------------------------------

EXTPROC_CLUSTER = "extproc"
MOCK_CLUSTER = "mock"
# The HTTP filter Envoy hands requests to ext_proc with (the benchmark's passthrough
# configuration removes it by this name).
EXTPROC_FILTER = "envoy.filters.http.ext_proc"
# Answered by Envoy itself, without ext_proc or a key: liveness for load balancers.
HEALTH_PATH = "/healthz"

# -- sizes and limits -------------------------------------------------------------------

# Envoy recommends body replies of at most 64 KiB in FULL_DUPLEX_STREAMED mode.
MAX_REPLY_CHUNK = 64 * 1024
# Room above MAX_REQUEST_BYTES, both in gRPC messages (a buffered request body plus
# framing) and in Envoy's buffer: Envoy lets a body through that ext_proc then answers
# with a 413 in the API's format; Envoy's own limit is the backstop for chunked bodies.
REQUEST_SLACK_BYTES = 1024 * 1024
# Envoy keeps one HTTP/2 connection to ext_proc with many concurrent streams.
MAX_CONCURRENT_STREAMS = 10_000
# Requests one ext_proc process takes at once by default (EXTPROC_MAX_STREAMS). From
# `make bench`: 256 open streams hold about 100-130 MiB, and one process moves 50-200k
# events/s; 512 streams of a real model (an event every 20-50 ms) stay within that for
# the lighter chains. Beyond it, a fast in-format "overloaded" beats every stream slowing.
DEFAULT_MAX_STREAMS = 512
# How often Envoy asks each ext_proc worker whether it is serving (grpc.health.v1).
EXTPROC_HEALTH_INTERVAL_S = 0.5
# How Envoy's response code details begin when its ext_proc call failed (the worker
# went away): its local-reply mapper answers those in format.
EXTPROC_ERROR_DETAILS = "ext_proc_error"
# What a client is told to wait (retry-after) after a refusal a retry soon gets past:
# an overloaded worker, a worker gone under the request, a connection of a replaced
# listener, limit counters briefly unreachable.
RETRY_SOON_S = 1
# A stream with no byte either way for this long is dead (Envoy's HCM default for
# every request, and each provider route's default). Models that think for minutes
# still send pings.
STREAM_IDLE_TIMEOUT_S = 600.0
# A client connection with no stream open for this long is closed.
CONNECTION_IDLE_TIMEOUT_S = 3600.0
# Envoy's connection to the ext_proc server (local, or in the same pod).
EXTPROC_CONNECT_TIMEOUT_S = 1.0

# -- Envoy's own replies ----------------------------------------------------------------

# The response code details of Envoy's 413 for a body over its buffer limit.
TOO_LARGE_DETAILS = "request_payload_too_large"
# Response flags of a request that never got an answer from its provider: connection
# failure, no healthy host, overflow, retries exhausted, reset, timeout, protocol
# error, no route, and the like. Envoy answers these itself (a 503 or 504).
UPSTREAM_FAILURE_FLAGS = ("UF", "UH", "UO", "URX", "UC", "UT", "UPE", "UR", "NR", "LR", "UMSDR")
# What Envoy retries toward a provider: only failures before any byte of the request
# left, never a request the provider may have read (a second, billed generation).
RETRY_ON = "connect-failure,refused-stream,reset-before-request"

# -- request facts ----------------------------------------------------------------------

# Envoy's json_to_metadata filter, ahead of ext_proc, reads a small request body's
# `model` and `stream` into this metadata namespace, which reaches ext_proc with the
# request headers: a request nothing needs the body of is routed from them alone, one
# gRPC message instead of two, and its body never crosses gRPC.
FACTS_NAMESPACE = "llm_gateway.request"
# The filter's name in the bootstrap (it exists for ext_proc alone: the benchmark's
# passthrough configuration removes it with ext_proc's).
FACTS_FILTER = "envoy.filters.http.json_to_metadata"
MODEL_FACT = "model"
STREAM_FACT = "stream"
# Set instead of the others when the body is not a JSON object Envoy could read.
UNREADABLE_FACT = "unreadable"
# Bodies up to this size only (by content-length): Envoy's JSON parser costs its worker
# 6-11 ns a byte, more than the gRPC message saves ext_proc past ~20 KB
# (benchmarks/experiments/results/request_facts.md); larger or chunked bodies reach
# ext_proc as before.
FACTS_MAX_BODY_BYTES = 20_000
# The content types it reads (RE2): what ext_proc takes as JSON, `application/json` in
# any case, with or without parameters.
JSON_CONTENT_TYPE = r"(?i)^\s*application/json\s*(;.*)?$"
# ext_proc's processing mode when no policy reads responses: the request headers and
# the buffered body only.
REQUEST_ONLY_MODE = {
    "request_header_mode": "SEND",
    "response_header_mode": "SKIP",
    "request_body_mode": "BUFFERED",
    "response_body_mode": "NONE",
    "request_trailer_mode": "SKIP",
    "response_trailer_mode": "SKIP",
}
# How ext_proc tells Envoy to keep a body it routed without (`mode_override` in its reply
# to the request headers; Envoy only takes this very mode, its `allowed_override_modes`).
# Skipping rather than asking (a NONE mode overridden to BUFFERED when a body is needed)
# keeps Envoy's buffer limit whole: a body asked for midway outgrew it, or stalled under
# flow control, in tests with large chunked bodies.
SKIP_BODY_MODE = {**REQUEST_ONLY_MODE, "request_body_mode": "NONE"}


def decimal_at_most(limit: int) -> str:
    """A regular expression (RE2) matching exactly the decimal numbers 0..`limit`
    without leading zeros or sign: Envoy compares a content-length with it."""
    digits = str(limit)
    n = len(digits)
    # Every number with fewer digits than the limit.
    alternatives = ["0"] + [f"[1-9][0-9]{{{k - 1}}}" for k in range(1, n)]
    # Numbers of the limit's length: equal up to position i, smaller at i, anything after.
    for i, ch in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(ch) > low:
            rest = n - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alternatives.append(f"{digits[:i]}[{low}-{int(ch) - 1}]{tail}")
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


# -- texts ----------------------------------------------------------------------------


def too_large_message(max_request_bytes: int) -> str:
    """Why a request body was refused for its size (ext_proc's and Envoy's own 413)."""
    return f"request body exceeds the gateway limit of {max_request_bytes} bytes"


def with_status(text: str, status: int | str) -> str:
    """An error text as the gateway writes Envoy's and upstreams' errors: with the HTTP
    status at the end."""
    return f"{text} (HTTP {status})"


# Envoy's catch-all route: ext_proc named a cluster this bootstrap lacks.
NO_CLUSTER_MESSAGE = (
    "gateway misconfigured: Envoy has no cluster for the provider the gateway chose; render "
    "the Envoy config again with the gateway's settings (llm-gateway render-envoy)"
)


def message_timeout_s(policy_timeout_s: float) -> int:
    """ext_proc's message_timeout in Envoy (headers and the buffered request body):
    the policies' own bound, in whole seconds."""
    return max(1, int(policy_timeout_s))
