#!/bin/bash
# Lints the IAM policies in ci/aws/ with parliament (pinned in ci/install-test-tools.sh),
# community auditors included; any finding (unknown actions are LOW, so every severity) that
# ci/aws/parliament.yaml does not explain fails the run.
# Needs: $VENV (default .venv) with parliament.
#
# The identity policies are linted with ACCOUNT_ID replaced by a sample account, as the
# setup in ci/README.md does. parliament has no mode for trust policies (it reports their
# missing Resource element), so the trust policies are only parsed here; their content is
# checked by tests/tests/workflows.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
readonly POLICIES=(iam-policy cloudformation-role-policy permissions-boundary)
readonly TRUST=(oidc-trust oidc-trust-gitlab cloudformation-role-trust)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

files=()
for name in "${POLICIES[@]}"; do
  sed 's/ACCOUNT_ID/123456789012/g' "ci/aws/$name.json" >"$work/$name.json"
  files+=("$work/$name.json")
done
for name in "${TRUST[@]}"; do
  "$VENV/bin/python" -c 'import json, sys; json.load(open(sys.argv[1]))' "ci/aws/$name.json"
done

echo "== parliament $("$VENV/bin/parliament" --version 2>&1 | tail -n 1): ${POLICIES[*]}"
# parliament's own `--config` ignore_locations match nothing (its make_list returns [] for
# plain YAML values, 1.6.4), so the findings come as JSON lines and the explained ones are
# dropped here, with the same semantics: every key of an entry must fully match (regex,
# case-insensitive) the finding's location.
status=0
(IFS=,; "$VENV/bin/parliament" --include-community-auditors --minimum_severity LOW \
  --json --files "${files[*]}") >"$work/findings.jsonl" || status=$?
if [ "$status" -gt 1 ]; then
  echo "parliament failed (exit $status)" >&2
  exit 1
fi
"$VENV/bin/python" - "$work/findings.jsonl" ci/aws/parliament.yaml <<'PY'
import json, re, sys
import yaml

findings = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
explained = yaml.safe_load(open(sys.argv[2])) or {}
left = []
for f in findings:
    location = f.get("location", {})
    ignored = any(
        all(
            re.fullmatch(str(pattern).lower(), str(location.get(key, "")).lower())
            for key, pattern in entry.items()
        )
        for entry in explained.get(f.get("issue"), {}).get("ignore_locations", [])
    )
    print(("explained: " if ignored else "FINDING:   ") + f"{f.get('severity')} {f.get('issue')} {location}")
    if not ignored:
        left.append(f)
sys.exit(1 if left else 0)
PY

echo "== handler permissions match the pinned cfn-lint"
"$VENV/bin/python" ci/handler-permissions.py --check

echo "check-iam-policies: ok"
