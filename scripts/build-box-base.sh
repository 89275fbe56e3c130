#!/usr/bin/env bash
# Builds the default base `box-base` (document 004's toolbox on Debian) with debootstrap and writes a
# .tar.gz of its root filesystem to $1. The mirror comes from this machine's own apt sources.
set -euo pipefail
out=${1:?usage: build-box-base.sh OUT.tar.gz}
suite=${FORKR_BASE_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}

mirror=${FORKR_MIRROR:-}
if [ -z "$mirror" ]; then
  # deb822 sources first (URIs: lines), then one-line sources (deb URL suite ...).
  mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n1 || true)
fi
[ -n "$mirror" ] || { echo "no apt mirror found in /etc/apt/sources.list*; set FORKR_MIRROR" >&2; exit 1; }

# Document 004's toolbox, as far as Debian packages it.
want="bash build-essential ca-certificates curl wget ripgrep fd-find git less vim nano openssh-client
openssh-sftp-server jq procps psmisc htop lsof iproute2 iputils-ping net-tools dnsutils netcat-openbsd
ncurses-bin util-linux tini python3 python3-pip python3-venv python-is-python3 tmux unzip zip eatmydata"
include=$(echo $want | tr ' ' ',')

root=$(mktemp -d /var/tmp/box-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite from $mirror into $root (a few minutes)..." >&2
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >&2

cat >"$root/etc/profile.d/forks-path.sh" <<'SH'
export PATH="$HOME/.local/bin:/box/proj/bin:/box/bin:$PATH"
SH
cat >"$root/etc/profile.d/eatmydata.sh" <<'SH'
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libeatmydata.so
SH
echo 'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libeatmydata.so' >>"$root/etc/environment"
printf '%s\n' 'export PATH="$HOME/.local/bin:/box/proj/bin:/box/bin:$PATH"' >>"$root/etc/bash.bashrc"
echo 'cd /work' >>"$root/root/.bashrc"
mkdir -p "$root/work" "$root/box/bin" "$root/box/all" "$root/box/proj"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -czf "$out" .
echo "wrote $out" >&2
