#!/usr/bin/env bash
# Checks the Helm chart without a cluster (make test runs it after the build): lint, three
# value sets rendered and validated against Kubernetes' schemas, checkov's scan, and the
# chart's settings against the binaries. Its tools come from PyPI into a virtualenv kept
# outside the clone (helm-python-sdk is Helm v4's library: no helm binary is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/venv.sh chart-tools "helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 checkov==3.3.30 yamllint==1.38.0 pyyaml==6.0.4")
"$VENV/bin/yamllint" -c helm/inferpush/.yamllint.yaml helm/inferpush/values.yaml helm/inferpush/ci helm/inferpush/Chart.yaml
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
"$VENV/bin/python" scripts/check_chart.py --bin-dir "$BIN_DIR" --checkov "$VENV/bin/checkov"
