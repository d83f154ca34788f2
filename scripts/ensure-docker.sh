#!/usr/bin/env bash
# Makes sure a Docker engine answers on DOCKER_HOST (default the local
# socket). Starts one only when none answers; its log goes to .run/dockerd.log.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
  echo "no Docker engine answers on DOCKER_HOST=${DOCKER_HOST}" >&2
  exit 1
fi
mkdir -p .run
echo "no Docker engine answers: starting dockerd (log: .run/dockerd.log)" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO nohup dockerd >.run/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dockerd did not come up; see .run/dockerd.log" >&2
exit 1
