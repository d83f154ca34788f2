#!/usr/bin/env bash
# Builds a tiny local image, dispatchd/busybox:latest, from Debian's
# busybox-static: handy for trying dispatchd on a host without a registry.
set -euo pipefail
IMAGE=${1:-dispatchd/busybox:latest}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE already exists"
  exit 0
fi
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ]; then
  echo "busybox not found: apt-get install busybox-static" >&2
  exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
echo "built $IMAGE"
