#!/bin/sh
# Provisions the CI base. POSIX sh only, so it also runs on a minimal (busybox) base.
set -eu
mkdir -p /opt/ci
echo "ci-toolchain 1" > /opt/ci/VERSION
