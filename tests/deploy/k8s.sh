#!/bin/bash
# The Kubernetes manifests: every file of the base and the example overlay, and what kustomize
# renders from each, against the Kubernetes JSON schemas (strict: unknown fields fail) and, for
# KEDA and Prometheus Operator kinds, their CRD schemas; then the cross-object rules (policy).
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_WORKER_EXE

K8S=$PAYQ_SOURCE_ROOT/deploy/k8s
WORK=$(mktemp -d -t payq-k8s.XXXXXX)
on_exit "rm -rf '$WORK'"

PY=$(deploy_python) || exit 1
NPM=$(deploy_npm) || exit 1
KUSTOMIZE=$(deploy_kustomize) || exit 1
read -ra KUSTOMIZE <<<"$KUSTOMIZE"

"$PAYQ_WORKER_EXE" --help >"$WORK/worker-help.txt" || die "payq-worker --help failed"
version=$(sed -n "s/^  version : '\(.*\)',\$/\1/p" "$PAYQ_SOURCE_ROOT/meson.build")
[[ -n $version ]] || die "no project version in meson.build"

# The files the kustomizations list as resources (patches are partial objects: they are
# checked through the rendered output).
files=()
for k in "$K8S/base" "$K8S/overlays/example"; do
	while IFS= read -r f; do
		files+=("$k/$f")
	done < <("$PY" -c '
import sys, yaml, os
k = yaml.safe_load(open(os.path.join(sys.argv[1], "kustomization.yaml")))
for r in k.get("resources", []):
    if os.path.isfile(os.path.join(sys.argv[1], r)):
        print(r)
' "$k")
done
((${#files[@]} >= 8)) || die "found only ${#files[@]} resource files"

for k in base overlays/example; do
	out=$WORK/${k//\//-}.yaml
	"${KUSTOMIZE[@]}" "$K8S/$k" >"$out" 2>"$WORK/kustomize.err" ||
		die "${KUSTOMIZE[*]} $k failed: $(cat "$WORK/kustomize.err")"
	pass "${KUSTOMIZE[*]##*/} $k renders $(grep -c '^kind:' "$out") objects"
done

"$PY" "$DEPLOY_DIR/deploytool.py" k8s-validate --versions "${K8S_VERSIONS[@]}" --npm "$NPM" \
	"${files[@]}" "$WORK/base.yaml" "$WORK/overlays-example.yaml" >"$WORK/validate.out" 2>&1 || {
	cat "$WORK/validate.out"
	die "schema validation failed"
}
sed "s|$WORK/|rendered |; s|$PAYQ_SOURCE_ROOT/||" "$WORK/validate.out"
pass "${#files[@]} manifest files and 2 rendered kustomizations valid for Kubernetes ${K8S_VERSIONS[*]} and the CRD schemas"

for k in base overlays-example; do
	tag=()
	[[ $k == base ]] && tag=(--expect-tag "$version")
	"$PY" "$DEPLOY_DIR/deploytool.py" k8s-policy "$WORK/$k.yaml" --worker-help "$WORK/worker-help.txt" \
		--dockerfile "$PAYQ_SOURCE_ROOT/deploy/docker/Dockerfile" --partitions "$PARTITIONS" \
		"${tag[@]}" >"$WORK/policy.out" 2>&1 || {
		cat "$WORK/policy.out"
		die "policy checks failed on $k"
	}
	sed "s|$WORK/||" "$WORK/policy.out"
	pass "policy checks on the rendered $k"
done
