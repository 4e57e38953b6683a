# Helpers for the deploy suite; source it after tests/lib/common.sh, do not run it.
# shellcheck shell=bash
#
# Tools that Debian does not package are fetched once into the cache (PAYQ_CACHE, default
# ~/.cache/payq) through their registries' ordinary clients, and used from there offline:
#   venv/                      kubernetes-validate and grafana-foundation-sdk (PyPI), on Debian's python3 with its
#                              python3-yaml and python3-jsonschema visible
#   npm/                       dclint (its compose-spec schema) and the @kubernetes-models
#                              CRD validators for KEDA and the Prometheus Operator (npm)
#   bin/kustomize-VERSION      kustomize, built with the machine's Go from the Go module proxy

# shellcheck source=tests/lib/worker.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/worker.sh"

# Variables set here are used by the scripts that source this file (hence SC2034).
# shellcheck disable=SC2034
DEPLOY_DIR=$PAYQ_SOURCE_ROOT/tests/deploy
CACHE=${PAYQ_CACHE:-$HOME/.cache/payq}

KUBERNETES_VALIDATE_VERSION=1.37.0
# Grafana's dashboard model (Python types generated from Grafana's schemas), for dashboard.py.
GRAFANA_SDK_VERSION='1769699379!11.6.0'
KUSTOMIZE_VERSION=v5.7.1
NPM_PACKAGES=(dclint@3.1.0 @kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0)
# Kubernetes versions the manifests must be valid for: an old supported one and the newest.
# shellcheck disable=SC2034
K8S_VERSIONS=(1.29.0 1.37.0)
# The partition count of payq.commands (DESIGN.md); KEDA's maxReplicaCount must equal it.
# shellcheck disable=SC2034
PARTITIONS=12

mkdir -p "$CACHE"

# Runs "$@" holding an exclusive lock on CACHE/.NAME.lock, so parallel tests fetch once.
with_lock() {
	local name=$1
	shift
	(
		exec {fd}>"$CACHE/.$name.lock"
		flock "$fd"
		"$@"
	)
}

_make_venv() {
	local venv=$CACHE/venv
	local stamp=$venv/.payq-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-grafana-sdk-${GRAFANA_SDK_VERSION#*!}
	[[ -f $stamp ]] && return 0
	local py=/usr/bin/python3
	[[ -x $py ]] || py=$(command -v python3)
	echo "creating $venv (kubernetes-validate $KUBERNETES_VALIDATE_VERSION and grafana-foundation-sdk from PyPI)" >&2
	rm -rf "$venv"
	"$py" -m venv --system-site-packages "$venv" >&2 || return 1
	PIP_CACHE_DIR=$CACHE/pip "$venv/bin/pip" install --quiet --disable-pip-version-check \
		"kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "grafana-foundation-sdk==$GRAFANA_SDK_VERSION" >&2 ||
		return 1
	"$venv/bin/python" -c 'import kubernetes_validate, yaml, jsonschema, grafana_foundation_sdk' || return 1
	touch "$stamp"
}

# Prints the venv's python: Debian's python3, PyYAML and jsonschema, plus kubernetes-validate and
# grafana-foundation-sdk.
deploy_python() {
	with_lock venv _make_venv || die "could not set up the Python venv in $CACHE/venv"
	echo "$CACHE/venv/bin/python"
}

_npm_install() {
	local dir=$CACHE/npm stamp
	stamp="$dir/.payq-$(printf '%s\n' "${NPM_PACKAGES[@]}" | md5sum | cut -c1-12)"
	[[ -f $stamp ]] && return 0
	command -v npm >/dev/null || {
		echo "npm not found (Node.js 20 and npm come with the machine; or apt-get install npm)" >&2
		return 1
	}
	echo "installing ${NPM_PACKAGES[*]} into $dir (npm)" >&2
	mkdir -p "$dir"
	rm -f "$dir"/.payq-*
	[[ -f $dir/package.json ]] || echo '{"name": "payq-deploy-tests", "private": true}' >"$dir/package.json"
	npm install --prefix "$dir" --cache "$CACHE/npm-cache" --no-audit --no-fund --loglevel=error \
		"${NPM_PACKAGES[@]}" >&2 || return 1
	touch "$stamp"
}

# Prints the node_modules folder holding the npm packages above.
deploy_npm() {
	with_lock npm _npm_install || die "could not install ${NPM_PACKAGES[*]} with npm into $CACHE/npm"
	echo "$CACHE/npm/node_modules"
}

_build_kustomize() {
	local bin=$CACHE/bin/kustomize-$KUSTOMIZE_VERSION work
	[[ -x $bin ]] && return 0
	command -v go >/dev/null || return 1
	echo "building kustomize $KUSTOMIZE_VERSION from the Go module proxy (once; about a minute)" >&2
	work=$CACHE/go
	mkdir -p "$CACHE/bin" "$work"
	GOBIN=$work/bin GOMODCACHE=$work/mod GOCACHE=$work/build GOFLAGS=-modcacherw GOTOOLCHAIN=local \
		go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2 || return 1
	mv "$work/bin/kustomize" "$bin"
	rm -rf "$work"
}

# Prints a command that renders a kustomization: "kustomize build" from the cache (built with
# Go if missing), or "kubectl kustomize" where there is no Go. PAYQ_KUSTOMIZE overrides.
deploy_kustomize() {
	if [[ -n ${PAYQ_KUSTOMIZE:-} ]]; then
		echo "$PAYQ_KUSTOMIZE build"
	elif with_lock kustomize _build_kustomize; then
		echo "$CACHE/bin/kustomize-$KUSTOMIZE_VERSION build"
	elif command -v kubectl >/dev/null; then
		echo "kubectl kustomize"
	else
		die "no kustomize: needs Go (go install from the module proxy) or kubectl"
	fi
}

# ---- the worker against the test services ----

# Creates a database of its own on the test cluster, dropped on exit; sets DEPLOY_DB to its
# conninfo (PAYQ_TEST_DB with dbname replaced).
# shellcheck disable=SC2034
fresh_database() {
	local name=$1
	PGOPTIONS='-c client_min_messages=warning' psql "$PAYQ_TEST_DB" -XAtq -v ON_ERROR_STOP=1 \
		-c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null ||
		die "cannot create database $name"
	on_exit "psql '$PAYQ_TEST_DB' -XAtq -c 'DROP DATABASE IF EXISTS $name WITH (FORCE)' >/dev/null 2>&1"
	if [[ $PAYQ_TEST_DB =~ (^|[[:space:]])dbname= ]]; then
		DEPLOY_DB=$(sed -E "s/(^|[[:space:]])dbname=[^[:space:]]*/\1dbname=$name/" <<<"$PAYQ_TEST_DB")
	else
		DEPLOY_DB="$PAYQ_TEST_DB dbname=$name"
	fi
}

# Creates topics on the test broker with its default partition count (12): through
# deploy/local/kafka on the running broker when tests/run started it, else relies on the
# broker creating topics on first use (the dev broker does). The caller sets WORK.
# shellcheck disable=SC2153
fresh_topics() {
	if [[ -n ${PAYQ_TEST_KAFKA_DIR:-} ]]; then
		PAYQ_KAFKA_TOPICS="$*" "$PAYQ_SOURCE_ROOT/deploy/local/kafka" start "$PAYQ_TEST_KAFKA_DIR" \
			>/dev/null 2>"$WORK/topics.log" || {
			cat "$WORK/topics.log" >&2
			die "cannot create topics $*"
		}
	fi
}

# Produces one message with kcat: TOPIC KEY VALUE [header=value...].
produce() {
	local topic=$1 key=$2 value=$3 h args=()
	shift 3
	for h in "$@"; do
		args+=(-H "$h")
	done
	printf '%s\t%s\n' "$key" "$value" |
		kcat -P -b "$PAYQ_TEST_BROKERS" -t "$topic" -K $'\t' -X partitioner=murmur2_random \
			"${args[@]}" || die "kcat could not produce to $topic"
}

# Produces a valid command: TOPIC TYPE ORDER_ID COMMAND_ID JSON.
produce_command() {
	produce "$1" "$3" "$5" content-type=application/json "payq-type=$2" "payq-command-id=$4"
}

# HTTP GET on 127.0.0.1:PORT PATH; prints the body, fails unless the status is 200.
http_get() {
	python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stderr.write(f"{sys.argv[2]}: {e}\n")
    sys.exit(1)
EOF
}

# Prints the value of one unlabelled sample in a Prometheus text scrape.
metric_value() {
	awk -v m="$1" '$1 == m { print $2; found = 1 } END { exit !found }' "$2"
}

# Stops the worker with SIGTERM; fails unless it exits 0 within SECONDS. Sets STOP_SECONDS.
# shellcheck disable=SC2034
stop_worker() {
	local pid=$1 limit=$2 t0 rc=0
	t0=$EPOCHREALTIME
	kill -TERM "$pid" 2>/dev/null || die "worker (pid $pid) is gone before SIGTERM"
	proc_wait_gone "$pid" "$limit" || die "worker did not exit within $limit s of SIGTERM"
	proc_reap "$pid"
	rc=$PROC_RC
	STOP_SECONDS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	((rc == 0)) || die "worker exited $rc after SIGTERM (want 0); log: $(tail -n 5 "$WORK/worker.log")"
}

# Starts the worker: start_worker ENV_FILE ARGV_FILE (NUL-separated, as deploytool.py
# worker-env writes them) with exactly that environment (env -i). Sets WORKER_PID; the
# worker's stderr goes to WORK/worker.log.
start_worker() {
	local envs=() argv=()
	mapfile -d '' -t envs <"$1"
	mapfile -d '' -t argv <"$2"
	worker_spawn --fresh-log --stderr-only "$WORK/worker.log" env -i "${envs[@]}" "${argv[@]}"
	WORKER_PID=$WORKER_SPAWN_PID
	on_exit "kill -KILL $WORKER_PID 2>/dev/null"
}

# Waits until GET 127.0.0.1:PORT/PATH answers 200, for at most SECONDS; fails with the last
# answer and the worker log.
wait_http() {
	local port=$1 path=$2 limit=$3 deadline
	deadline=$((SECONDS + limit))
	until http_get "$port" "$path" >/dev/null 2>"$WORK/http.err"; do
		kill -0 "$WORKER_PID" 2>/dev/null || die "the worker exited: $(tail -n 20 "$WORK/worker.log")"
		((SECONDS < deadline)) || die "$path not 200 within $limit s ($(cat "$WORK/http.err")); log: $(tail -n 20 "$WORK/worker.log")"
		sleep 0.2
	done
}
