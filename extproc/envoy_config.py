"""Render the Envoy bootstrap from `envoy/envoy.yaml.tmpl` and the gateway settings."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from string import Template

from extproc.config import Settings
from extproc.routing import Router, Upstream

TEMPLATE = Path(__file__).resolve().parent.parent / "envoy" / "envoy.yaml.tmpl"


def template_path() -> Path:
    """ENVOY_TEMPLATE (set in the container image, where no checkout exists), else the
    checkout's envoy/envoy.yaml.tmpl."""
    override = os.environ.get("ENVOY_TEMPLATE")
    return Path(override) if override else TEMPLATE


DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _seconds(value: float) -> str:
    """A protobuf Duration in YAML: fixed-point, never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def _route(upstream: Upstream) -> str:
    prefix = upstream.path_prefix
    rewrite = f"\n    prefix_rewrite: {json.dumps(prefix + '/')}" if prefix else ""
    retries = ""
    if upstream.connect_retries:
        # Only failures before the provider got the request: a retry never repeats a
        # generation. Bodies are buffered for ext_proc anyway, so Envoy can resend them.
        retries = f"""
    retry_policy:
      retry_on: connect-failure,refused-stream,reset-before-request
      num_retries: {upstream.connect_retries}"""
    return f"""- match:
    prefix: /
    headers:
    - name: x-gateway-upstream
      string_match: {{ exact: {upstream.cluster} }}
  route:
    cluster: {upstream.cluster}
    # Streams last as long as the model writes: no route timeout, only an idle one.
    timeout: 0s
    idle_timeout: {_seconds(upstream.idle_timeout_s)}
    auto_host_rewrite: true{rewrite}{retries}
  # ext_proc must see plain SSE, not gzip; the routing header stays inside Envoy.
  request_headers_to_remove: [accept-encoding, x-gateway-upstream]"""


def _cluster(upstream: Upstream, ca_bundle: str) -> str:
    by_ip = _is_ip(upstream.host)
    kind = "STATIC" if by_ip else "LOGICAL_DNS"
    tls = ""
    # SNI carries names only; a certificate for an address lists it as an IP SAN.
    sni = "" if by_ip else f"\n      sni: {upstream.host}"
    san_type = "IP_ADDRESS" if by_ip else "DNS"
    if upstream.scheme == "https":
        tls = f"""
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext{sni}
      common_tls_context:
        validation_context:
          trusted_ca: {{ filename: {ca_bundle} }}
          match_typed_subject_alt_names:
          - san_type: {san_type}
            matcher: {{ exact: {upstream.host} }}"""
    return f"""- name: {upstream.cluster}
  type: {kind}
  connect_timeout: {_seconds(upstream.connect_timeout_s)}
  dns_lookup_family: V4_PREFERRED
  load_assignment:
    cluster_name: {upstream.cluster}
    endpoints:
    - lb_endpoints:
      - endpoint:
          address:
            socket_address: {{ address: {upstream.host}, port_value: {upstream.port} }}{tls}"""


# Envoy's own local replies, rewritten into each API's error JSON. Statuses the ext_proc
# server answers itself (401, 400, 404, 413 with content-length...) already carry the
# right body; these mappers only match replies Envoy generated: upstream failures, told
# apart by response flags, and a body over the buffer limit, by its response code details.
_UPSTREAM_FAILED = (
    "response_flag_filter: { flags: [UF, UH, UO, URX, UC, UT, UPE, UR, NR, LR, UMSDR] }"
)
_TOO_LARGE = "\n".join(
    [
        "extension_filter:",
        "          name: envoy.access_loggers.extension_filters.cel",
        "          typed_config:",
        '            "@type": type.googleapis.com/'
        "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
        "            expression: \"response.code_details == 'request_payload_too_large'\"",
    ]
)


def _mappers(max_request_bytes: int) -> str:
    too_large = f"request body exceeds the gateway limit of {max_request_bytes} bytes (HTTP 413)"
    cases = [
        # (filter, anthropic type, openai type, openai code, message)
        (_TOO_LARGE, "request_too_large", "invalid_request_error", "request_too_large", too_large),
        (
            _UPSTREAM_FAILED,
            "api_error",
            "server_error",
            "%RESPONSE_CODE_DETAILS%",
            "%LOCAL_REPLY_BODY%",
        ),
    ]
    # OpenAI-style requests, as extproc/apis/kind.py tells them apart: /v1/chat/*, also
    # after a provider's prefix_rewrite moved it (Envoy keeps the client's path in
    # x-envoy-original-path then), and /v1/models* without anthropic-version. Anything
    # else is Anthropic's.
    openai_path = """or_filter:
          filters:
          - header_filter:
              header: { name: ":path", string_match: { prefix: "/v1/chat" } }
          - header_filter:
              header: { name: x-envoy-original-path, string_match: { prefix: "/v1/chat" } }
          - and_filter:
              filters:
              - or_filter:
                  filters:
                  - header_filter:
                      header: { name: ":path", string_match: { prefix: "/v1/models" } }
                  - header_filter:
                      header:
                        name: x-envoy-original-path
                        string_match: { prefix: "/v1/models" }
              - header_filter:
                  header: { name: anthropic-version, present_match: true, invert_match: true }"""
    blocks = []
    for flag_filter, a_type, o_type, o_code, message in cases:
        openai_fmt = {"error": {"message": message, "type": o_type, "param": None, "code": o_code}}
        anthropic_fmt = {"type": "error", "error": {"type": a_type, "message": message}}
        for path_filter, fmt in (
            (openai_path, openai_fmt),
            (
                'header_filter:\n          header: { name: ":path", present_match: true }',
                anthropic_fmt,
            ),
        ):
            blocks.append(
                f"""- filter:
    and_filter:
      filters:
      - {flag_filter}
      - {path_filter}
  body_format_override:
    json_format: {json.dumps(fmt)}"""
            )
    return "\n".join(blocks)


def render(
    settings: Settings,
    ca_bundle: str | None = None,
    response_body: bool = True,
    router: Router | None = None,
    any_keys: bool = False,
) -> str:
    """The bootstrap. `response_body=False` keeps response bodies away from ext_proc
    entirely, for policy chains that never look at them (the fastest path). `router`
    names the providers, one cluster each (the built-in two by default); `any_keys`
    makes the config independent of which provider keys are set (see Router.clusters)."""
    ca = ca_bundle or os.environ.get("CA_BUNDLE", DEFAULT_CA_BUNDLE)
    template = template_path()
    if not template.exists():
        raise FileNotFoundError(
            f"Envoy template {template} not found: run from a checkout of the repository "
            "(make install), where envoy/ sits beside extproc/"
        )
    upstreams = (router or Router.build(settings)).clusters(any_keys)
    values = {
        # The admin interface can reconfigure Envoy: never beyond loopback.
        "admin_host": "127.0.0.1",
        "admin_port": settings.admin_port,
        "listen_host": settings.host,
        "listen_port": settings.gateway_port,
        "extproc_endpoints": _indent(
            "\n".join(
                f"- endpoint: {{ address: {{ socket_address: {{ address: {settings.extproc_host}, "
                f"port_value: {settings.extproc_port + i} }} }} }}"
                for i in range(settings.extproc_workers)
            ),
            8,
        ),
        # A service name under compose, an address on one host or in a pod.
        "extproc_cluster_type": "STATIC" if _is_ip(settings.extproc_host) else "STRICT_DNS",
        # Slightly above the gateway's own limit so ext_proc answers 413 in format when
        # the client sent content-length; Envoy's limit is the backstop for chunked bodies.
        "buffer_limit": settings.max_request_bytes + 1024 * 1024,
        "message_timeout": f"{max(1, int(settings.policy_timeout_s))}s",
        # Without a policy that looks at responses, ext_proc sees none of them: one
        # round trip less per request, and bodies stream straight through Envoy.
        "response_header_mode": "SEND" if response_body else "SKIP",
        "response_body_mode": "FULL_DUPLEX_STREAMED" if response_body else "NONE",
        "response_trailer_mode": "SEND" if response_body else "SKIP",
        "local_reply_mappers": _indent(_mappers(settings.max_request_bytes), 12),
        "upstream_routes": _indent("\n".join(_route(u) for u in upstreams), 14),
        "upstream_clusters": _indent("\n".join(_cluster(u, ca) for u in upstreams), 2),
    }
    return Template(template.read_text()).substitute(values)
