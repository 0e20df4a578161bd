# LLM policy gateway: the ext_proc gRPC server (default command) and, from the same
# image, the mock LLM (`python -m extproc.mock_llm --host 0.0.0.0 --port 9000`).
# Envoy runs in its own container (docker-compose.yml, deploy/kubernetes/).
#
#   docker build -t llm-gateway:latest .
#   docker run --rm -p 50051:50051 -e EXTPROC_LISTEN=0.0.0.0 llm-gateway:latest
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Non-editable install from pyproject.toml (pinned dependencies); the source tree is
# removed afterwards so `python -m extproc` can only import the installed package.
# README.m[d]: copied when present (pyproject names it), no error when absent.
COPY pyproject.toml README.m[d] /tmp/src/
COPY extproc /tmp/src/extproc
# xds-protos also ships an older opentelemetry/proto, which may land over
# opentelemetry-proto's (the OTLP exporter then fails to import): put it back.
RUN pip install /tmp/src && rm -rf /tmp/src \
    && pip install --force-reinstall --no-deps \
       "$(pip show opentelemetry-proto | sed -n 's/^Version: /opentelemetry-proto==/p')" \
    && python -c "from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope"

# Numeric uid so Kubernetes' runAsNonRoot can check it.
RUN useradd --system --uid 10001 --user-group --create-home --shell /usr/sbin/nologin gateway \
    && install -d -o 10001 -g 10001 /var/lib/llm-gateway
# The audit store's directory (AUDIT_DB), owned by the gateway so a volume mounted
# there starts writable.
VOLUME /var/lib/llm-gateway
USER 10001:10001
WORKDIR /home/gateway

# ext_proc gRPC (EXTPROC_PORT). It binds EXTPROC_LISTEN, 127.0.0.1 by default: set
# EXTPROC_LISTEN=0.0.0.0 when Envoy runs in another container (compose); leave the
# default when Envoy shares the pod's network namespace (Kubernetes sidecar).
# The admin server (web view, admin API, /metrics) on GATEWAY_ADMIN_PORT, 8001.
# The mock LLM, when run from this image, listens on 9000.
EXPOSE 50051 8001
CMD ["python", "-m", "extproc", "serve"]
