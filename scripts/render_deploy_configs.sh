#!/usr/bin/env bash
# Regenerate the Envoy bootstraps shipped for deployment (extproc/envoy_config/):
#   envoy/envoy.compose.yaml                  (docker compose: services extproc, mock-llm)
#   deploy/kubernetes/envoy-configmap.yaml    (one pod: Envoy, ext_proc, mock on loopback)
# Run it after any change to extproc/envoy_config/ or what it renders from;
# tests/e2e/test_deploy_configs.py fails while these files are out of date.
#
# Usage: scripts/render_deploy_configs.sh   (PYTHON=... to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    PYTHON=python3
fi
SELF=scripts/render_deploy_configs.sh

# A clean environment: keys, URL overrides or CA_BUNDLE set in this shell must not
# leak into the shipped files (the renderer reads them all).
render() {
    env -i PATH="$PATH" "$@" "$PYTHON" -m extproc render-envoy
}

compose_tmp="$(mktemp)"
k8s_tmp="$(mktemp)"
trap 'rm -f "$compose_tmp" "$k8s_tmp"' EXIT

{
    echo "# Generated: GATEWAY_HOST=0.0.0.0 EXTPROC_HOST=extproc MOCK_LLM_HOST=mock-llm python -m extproc render-envoy (via $SELF); do not edit, rerun $SELF whenever extproc/envoy_config/ changes."
    render GATEWAY_HOST=0.0.0.0 EXTPROC_HOST=extproc MOCK_LLM_HOST=mock-llm
} >"$compose_tmp"

{
    echo "# Generated: GATEWAY_HOST=0.0.0.0 python -m extproc render-envoy, wrapped in a ConfigMap (via $SELF); do not edit, rerun $SELF whenever extproc/envoy_config/ changes."
    cat <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm-gateway-envoy
  labels:
    app.kubernetes.io/name: llm-gateway
data:
  envoy.yaml: |
EOF
    # Indent non-empty lines only, so the block scalar holds exactly the rendered text.
    render GATEWAY_HOST=0.0.0.0 | sed 's/^./    &/'
} >"$k8s_tmp"

mv "$compose_tmp" envoy/envoy.compose.yaml
mv "$k8s_tmp" deploy/kubernetes/envoy-configmap.yaml
chmod 644 envoy/envoy.compose.yaml deploy/kubernetes/envoy-configmap.yaml
echo "wrote envoy/envoy.compose.yaml and deploy/kubernetes/envoy-configmap.yaml"
