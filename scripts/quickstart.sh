#!/usr/bin/env bash
# Forkr on this machine in one command: installs what it needs, builds the binaries, builds the
# default base `box-base` with debootstrap (first run only, a few minutes), starts forkr-server on
# 127.0.0.1:7878 with its data in /var/lib/forkr, and applies the minimal example workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
data=${FORKR_DATA_DIR:-/var/lib/forkr}
listen=${FORKR_LISTEN:-127.0.0.1:7878}
bash scripts/deps.sh
cargo build --release --bins
bin=$PWD/target/release
install -m 0755 "$bin/4kr" "$bin/forkr-server" "$bin/forkr-shim" /usr/local/bin/

if ! curl -fsS "http://$listen/healthz" >/dev/null 2>&1; then
  mkdir -p "$data"
  nohup forkr-server --listen "$listen" --data-dir "$data" >>"$data/server.log" 2>&1 &
  for _ in $(seq 1 100); do curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
fi
export FORKR_URL="http://$listen"
export FORKR_TOKEN="$(cat "$data/token")"

if ! 4kr base list | grep -q '^box-base '; then
  tarball=$data/box-base.tar.gz
  [ -f "$tarball" ] || bash scripts/build-box-base.sh "$tarball"
  4kr base import box-base --file "$tarball"
fi

(cd examples/minimal && 4kr apply --auto-approve)
4kr exec -p minimal hello -- sh -c 'echo "hello from $BOX_NAME ($(uname -sr))"'
cat <<MSG

Forkr is running: server http://$listen, data in $data, log in $data/server.log.
  export FORKR_URL=http://$listen FORKR_TOKEN=\$(sudo cat $data/token)
  4kr list
MSG
