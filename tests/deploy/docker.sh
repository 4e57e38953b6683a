#!/bin/bash
# deploy/docker/Dockerfile and .dockerignore, checked against the build without an engine:
# the runtime stage installs the Debian packages that own every library the installed
# binaries link, runs as a numeric non-root user, stops with SIGTERM, and its ENTRYPOINT is
# the installed payq-worker; .dockerignore keeps every build input. Then payq-httpcheck, the
# image's probe, against a tiny HTTP server.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_BUILD_ROOT

WORK=$(mktemp -d -t payq-docker.XXXXXX)
on_exit "rm -rf '$WORK'"

PY=$(deploy_python) || exit 1
"$PY" "$DEPLOY_DIR/deploytool.py" dockerfile "$PAYQ_SOURCE_ROOT/deploy/docker/Dockerfile" \
	--dockerignore "$PAYQ_SOURCE_ROOT/.dockerignore" --build "$PAYQ_BUILD_ROOT" \
	--root "$PAYQ_SOURCE_ROOT" >"$WORK/out" 2>&1 || {
	cat "$WORK/out"
	die "Dockerfile checks failed"
}
sed "s|$PAYQ_SOURCE_ROOT/||" "$WORK/out"

# payq-httpcheck: 200 passes, 503 and a closed port fail.
port=$(free_port)
python3 - "$port" >"$WORK/http.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/healthz" else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"not ready\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
server=$!
on_exit "kill $server 2>/dev/null"
check=$PAYQ_SOURCE_ROOT/deploy/docker/payq-httpcheck
wait_for "'$check' /healthz 127.0.0.1:$port" 10 || die "payq-httpcheck /healthz did not pass against a 200"
pass "payq-httpcheck passes on HTTP 200: $("$check" /healthz "127.0.0.1:$port")"
if "$check" /readyz "127.0.0.1:$port" >/dev/null; then
	die "payq-httpcheck passed on HTTP 503"
fi
pass "payq-httpcheck fails on HTTP 503"
closed=$(free_port)
if "$check" /readyz "127.0.0.1:$closed" 2>/dev/null; then
	die "payq-httpcheck passed on a closed port"
fi
pass "payq-httpcheck fails on a closed port"
PAYQ_HTTP_ADDR=0.0.0.0:$port "$check" /healthz >/dev/null || die "payq-httpcheck ignores PAYQ_HTTP_ADDR's port"
pass "payq-httpcheck takes the port from PAYQ_HTTP_ADDR"

# An IPv6 PAYQ_HTTP_ADDR: [::1]:PORT is probed on ::1, an explicit [::1]:PORT too.
port6=$(free_port)
python3 - "$port6" >"$WORK/http6.log" 2>&1 <<'PY' &
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok over ipv6\n")
    def log_message(self, *a):
        pass
class S(http.server.HTTPServer):
    address_family = socket.AF_INET6
S(("::1", int(sys.argv[1])), H).serve_forever()
PY
server6=$!
on_exit "kill $server6 2>/dev/null"
wait_for "'$check' /healthz '[::1]:$port6'" 10 || die "payq-httpcheck /healthz [::1]:$port6 failed: $(cat "$WORK/http6.log")"
pass "payq-httpcheck reaches [::1]:$port6: $("$check" /healthz "[::1]:$port6")"
PAYQ_HTTP_ADDR="[::1]:$port6" "$check" /healthz >/dev/null || die "payq-httpcheck does not follow PAYQ_HTTP_ADDR=[::1]:$port6"
pass "payq-httpcheck probes ::1 when PAYQ_HTTP_ADDR=[::1]:PORT"
