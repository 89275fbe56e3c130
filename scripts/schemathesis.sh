#!/usr/bin/env bash
# Property-based API testing (issue 7, item 3): schemathesis generates requests from the OpenAPI
# document the server itself serves (/v1/openapi.json), valid and invalid, sends them to a real
# forkr-server and fails on any finding: a 5xx answer, or an answer (status, content type, body)
# that the document does not describe.
#
# The server runs on loopback inside a network namespace of its own (nothing reaches the host's
# network, no port can clash), on a temporary data dir with a loop-mounted btrfs image, with a tiny
# busybox base imported so that box creation really happens. Everything is torn down on exit,
# also on failure or Ctrl-C.
#
# Needs root. Environment:
#   FORKR_BIN_DIR          where forkr-server is (default target/debug)
#   SCHEMATHESIS_EXAMPLES  fuzzing test cases per API operation (default 60), after the coverage
#                          phase's cases derived from each schema's boundaries
#   SCHEMATHESIS_SEED      random seed (default: a fixed one, so CI runs are reproducible)
#   SCHEMATHESIS_TIMEOUT   seconds after which a hanging run is killed and fails (default 420)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN_DIR=${FORKR_BIN_DIR:-$ROOT/target/debug}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-60}
SEED=${SCHEMATHESIS_SEED:-20261125}
TIMEOUT=${SCHEMATHESIS_TIMEOUT:-420}
VENV=$ROOT/target/schemathesis-venv
# Pinned major version: a new major may change the CLI and the checks.
ST_SPEC='schemathesis>=4.3,<5'

if [ "$(id -u)" != 0 ]; then
  echo "scripts/schemathesis.sh must run as root (the server mounts a btrfs image)" >&2
  exit 1
fi
[ -x "$BIN_DIR/forkr-server" ] || { echo "$BIN_DIR/forkr-server not built: run cargo build --workspace --bins" >&2; exit 1; }

# The venv: made once, re-used while it has a working `st`. pip uses its configured index.
if ! "$VENV/bin/st" --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$ST_SPEC"
fi
echo "schemathesis: $("$VENV/bin/st" --version)"

# Everything else runs in a new network namespace (`unshare --net`): loopback only.
if [ "${FORKR_ST_INNER:-}" != 1 ]; then
  exec env FORKR_ST_INNER=1 unshare --net -- "$0" "$@"
fi
ip link set lo up

WORK=$(mktemp -d /tmp/forkr-st-XXXXXX)
DATA=$WORK/data
SERVER_PID=
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -d "$DATA" ]; then
    "$BIN_DIR/forkr-server" teardown --data-dir "$DATA" >/dev/null 2>&1 ||
      echo "forkr-server teardown of $DATA failed: mounts or loop devices may be left" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A tiny base built in milliseconds: busybox-static with its applets, tini-static, a `bash` that
# hands over to busybox sh.
base=$WORK/root
mkdir -p "$base"/{bin,usr/bin,etc,root,tmp,work,proc,sys,dev,run,home}
cp /usr/bin/busybox "$base/bin/busybox"
cp /usr/bin/tini-static "$base/usr/bin/tini"
for applet in $(/usr/bin/busybox --list); do
  [ "$applet" = busybox ] || [ -e "$base/bin/$applet" ] || ln -s busybox "$base/bin/$applet"
done
printf '#!/bin/sh\nexec /bin/sh "$@"\n' >"$base/bin/bash"
chmod 755 "$base/bin/bash"
echo 'root:x:0:0:root:/root:/bin/bash' >"$base/etc/passwd"
echo 'root:x:0:' >"$base/etc/group"
tar -C "$base" -czf "$WORK/base.tar.gz" .

mkdir -p "$DATA"
FORKR_LOG=${FORKR_LOG:-error} "$BIN_DIR/forkr-server" --data-dir "$DATA" --listen 127.0.0.1:0 \
  --image-size 4G --subnet off --nat off --proxy-listen off --proxy-http-listen off \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
URL=
for _ in $(seq 600); do
  URL=$(sed -n 's/^forkr-server listening on //p' "$WORK/server.out")
  [ -n "$URL" ] && [ -s "$DATA/token" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; echo "forkr-server did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "forkr-server did not print its address within 60 s" >&2; exit 1; }
TOKEN=$(cat "$DATA/token")
AUTH="Authorization: Bearer $TOKEN"

curl -fsS -H "$AUTH" --data-binary @"$WORK/base.tar.gz" "$URL/v1/bases/box-base/import" >/dev/null
# Objects with simple names, so that generated requests sometimes hit something that exists.
curl -fsS -H "$AUTH" -H 'Content-Type: application/json' -d '{"name":"a"}' \
  "$URL/v1/projects/default/boxes" >/dev/null
curl -fsS -H "$AUTH" -H 'Content-Type: application/json' -d '{"name":"a"}' \
  "$URL/v1/projects/default/volumes" >/dev/null

echo "schemathesis against $URL/v1/openapi.json: up to $EXAMPLES examples per operation, seed $SEED"
start=$(date +%s)
status=0
# A bounded number of examples, not --max-time: with a time budget schemathesis repeats fuzzing
# until the budget is spent. Checks: no 5xx; status codes, content types and bodies as documented. Shrinking is off (a
# finding is reported as found; reproduce it with the printed curl command and the seed). One
# worker: hypothesis's lambda descriptions call ast.parse, which is not thread-safe on Python 3.11
# ("AST constructor recursion depth mismatch"), and the server is what is under test anyway.
# Left out: the port wait long poll (it holds each request up to its timeout, 30 s by default;
# tests/tests/network.rs covers it), which alone would take most of the time budget.
PYTHONPATH=$ROOT/scripts SCHEMATHESIS_HOOKS=schemathesis_hooks \
timeout "$TIMEOUT" "$VENV/bin/st" run "$URL/v1/openapi.json" \
  --header "$AUTH" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --seed "$SEED" \
  --phases examples,coverage,fuzzing \
  --exclude-path-regex '/ports/\{port\}/wait$' \
  --workers 1 --request-timeout 60 --no-shrink \
  --report junit --report-dir "$WORK/report" \
  --suppress-health-check all || status=$?
echo "schemathesis finished in $(($(date +%s) - start)) s (exit $status)"
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "forkr-server died during the run:" >&2
  tail -50 "$WORK/server.err" >&2
  exit 1
fi
if [ "$status" != 0 ]; then
  echo "--- server log (errors) ---" >&2
  tail -50 "$WORK/server.err" >&2
fi
exit "$status"
