#!/bin/bash
# Lints the deployable templates and their boot scripts; any finding fails the run.
# Needs: $VENV (default .venv) with cfn-lint, checkov and moto[server]; shellcheck on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

echo "== templates match their boot scripts"
python3 ci/render-templates.py --check

echo "== shellcheck"
# -x follows each script's include stanza into templates-common/boot-lib.sh.
shellcheck -x --severity=style templates-cfn/scripts/*.sh templates-arm/scripts/*.sh \
  templates-common/*.sh ci/templates-check.sh ci/check-iam-policies.sh

echo "== cfn-lint"
"$VENV/bin/cfn-lint" templates-cfn/*.yaml

echo "== checkov"
"$VENV/bin/checkov" --quiet --compact --skip-download --framework cloudformation -d templates-cfn
"$VENV/bin/checkov" --quiet --compact --skip-download --framework arm -d templates-arm

echo "== moto accepts the CloudFormation template"
"$VENV/bin/python" ci/moto-accepts-template.py

echo "templates-check: ok"
