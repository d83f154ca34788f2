#!/usr/bin/env bash
# Installs the Debian packages dispatchd builds and tests with, only those
# missing. Idempotent and unattended (CI has no terminal).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap g++ make pkg-config python3
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost-dev libssl-dev nlohmann-json3-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  docker.io docker-compose busybox-static prometheus inotify-tools curl openssl ca-certificates
  systemd nodejs python3-grpcio python3-protobuf
  # etcd and etcdctl: the controller's etcd tests run members of their own
  # (tests/testing/etcd_cluster.h), on free ports beside any etcd service.
  etcd-server etcd-client
)
# Extra packages a target needs beyond these (e.g. `make fuzz`: clang and
# its libFuzzer/sanitizer runtimes).
PACKAGES+=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
