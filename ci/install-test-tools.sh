#!/usr/bin/env bash
# Installs what `cargo test --workspace` needs when CI is set (then a missing tool fails a
# test instead of skipping it), and the template linters ci/templates-check.sh runs:
#
#   system packages   shellcheck; a headless Chromium for the report's browser test
#   Python virtualenv moto[server], cfn-lint, checkov, parliament (the IAM policy linter
#                     ci/check-iam-policies.sh runs), pinned below to the versions the
#                     tests were proven with; in $VENV (default .venv in the repository
#                     root, where the moto tests look for moto_server)
#
# Called by .ci/run and by the test jobs of ci/github/cloud-tests.yml and
# ci/gitlab/.gitlab-ci.yml (tests/tests/workflows.rs checks that they do).
# Works as root on Debian (GitLab's rust image, .ci/run) and as a user with passwordless
# sudo on GitHub's Ubuntu runners. Ubuntu's `chromium` package is only a snap wrapper, so
# there the preinstalled Google Chrome (`google-chrome`, which the browser test accepts)
# is used and nothing is installed for the browser.
#
# Usage: ci/install-test-tools.sh      (VENV=path for another virtualenv)
# Exits non-zero when a tool cannot be installed.
set -euo pipefail

# Versions the test suite was last run green with; bump together with a test run.
readonly PYTHON_TOOLS=(
  "moto[server]==5.2.5"
  "cfn-lint==1.58.0"
  "checkov==3.3.30"
  "parliament==1.6.4"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-.venv}"

say() { printf 'install-test-tools: %s\n' "$*"; }
fail() { say "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif have sudo && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "system packages need root or passwordless sudo (running as $(id -un))"
fi

os_id="$(sed -n 's/^ID=//p' /etc/os-release 2>/dev/null | tr -d '"')"

browser=""
for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
  if have "$candidate"; then
    browser="$candidate"
    break
  fi
done

packages=()
have shellcheck || packages+=(shellcheck)
if ! have python3; then
  packages+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if [ -z "$browser" ]; then
  if [ "$os_id" = ubuntu ]; then
    fail "no chromium or google-chrome on PATH, and Ubuntu's chromium package is a snap; install Google Chrome"
  fi
  packages+=(chromium)
fi

if [ "${#packages[@]}" -gt 0 ]; then
  say "apt-get install ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ -z "$browser" ]; then
  have chromium || fail "chromium was installed but is not on PATH"
  browser=chromium
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_TOOLS[@]}"

# Each tool answers, or the script fails here rather than in a test.
for tool in moto_server cfn-lint checkov parliament; do
  [ -x "$venv/bin/$tool" ] || fail "$venv/bin/$tool missing after pip install"
done
"$venv/bin/cfn-lint" --version >/dev/null || fail "cfn-lint does not run"
shellcheck --version >/dev/null || fail "shellcheck does not run"
"$browser" --headless --disable-gpu --no-sandbox --version >/dev/null 2>&1 \
  || "$browser" --version >/dev/null || fail "$browser does not run"

venv_abs="$(cd "$venv" && pwd)"
# GitHub Actions: later steps of the job see the tools too.
if [ -n "${GITHUB_ENV:-}" ]; then
  printf 'CLOUDTEST_MOTO_SERVER=%s\n' "$venv_abs/bin/moto_server" >> "$GITHUB_ENV"
fi
if [ -n "${GITHUB_PATH:-}" ]; then
  printf '%s\n' "$venv_abs/bin" >> "$GITHUB_PATH"
fi

say "moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)'), $("$venv/bin/cfn-lint" --version 2>&1 | head -n 1), checkov $("$venv/bin/checkov" --version 2>/dev/null | head -n 1)"
say "$(shellcheck --version | sed -n 's/^version: /shellcheck /p'), browser: $(command -v "$browser")"
say "done; moto_server at $venv_abs/bin/moto_server"
