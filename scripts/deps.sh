#!/usr/bin/env bash
# Installs the system packages Forkr and its tests need (Debian/Ubuntu, as root). Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(btrfs-progs busybox-static tini debootstrap iproute2 iptables util-linux tar gzip curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${FORKR_APT_UPDATE:-0}" = 1 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
modprobe btrfs 2>/dev/null || true
modprobe loop 2>/dev/null || true
