#!/bin/bash
# The PrometheusRule: its groups, as kustomize renders them, pass `promtool check rules`; the
# promtool unit tests in alerts.test.yaml fire (and do not fire) the main alerts on synthetic
# series; every alert has a severity, a summary and a runbook section in deploy/README.md.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"

command -v promtool >/dev/null || die "promtool not found (apt-get install prometheus)"
WORK=$(mktemp -d -t payq-rules.XXXXXX)
on_exit "rm -rf '$WORK'"
PY=$(deploy_python) || exit 1
KUSTOMIZE=$(deploy_kustomize) || exit 1
read -ra KUSTOMIZE <<<"$KUSTOMIZE"

"${KUSTOMIZE[@]}" "$PAYQ_SOURCE_ROOT/deploy/k8s/base" >"$WORK/base.yaml" || die "kustomize build failed"
"$PY" "$DEPLOY_DIR/deploytool.py" rules "$WORK/base.yaml" --out "$WORK/rules.yaml" \
	--readme "$PAYQ_SOURCE_ROOT/deploy/README.md" || die "rule extraction or runbook check failed"
promtool check rules "$WORK/rules.yaml" || die "promtool check rules failed"
pass "promtool check rules: $(promtool --version 2>&1 | head -n 1)"
cp "$DEPLOY_DIR/alerts.test.yaml" "$WORK/"
promtool test rules "$WORK/alerts.test.yaml" || die "promtool test rules failed"
pass "promtool test rules: the alert unit tests pass"
