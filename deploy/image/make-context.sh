#!/usr/bin/env bash
# Builds the docker build context of dispatchd's image as one tar:
#   Dockerfile
#   rootfs/usr/local/bin/{dispatchd,dispatchctl}   stripped
#   rootfs/<every shared library they load, at the path ldd names>
#   rootfs/etc/{passwd,group,nsswitch.conf}, rootfs/etc/ssl/certs/ca-certificates.crt
#   rootfs/app/events, rootfs/tmp, rootfs/run, rootfs/var/run -> ../run
#
# Usage: make-context.sh OUT.tar DOCKERFILE DISPATCHD DISPATCHCTL
# Runs where the binaries were built: the libraries are this machine's (the
# Debian packages the build linked against).
set -euo pipefail

out=$1 dockerfile=$2 dispatchd=$3 dispatchctl=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/app/events" "$root/tmp" \
  "$root/run" "$root/var"
chmod 1777 "$root/tmp"
ln -s ../run "$root/var/run"

for bin in "$dispatchd" "$dispatchctl"; do
  name=$(basename "$bin")
  cp "$bin" "$root/usr/local/bin/$name"
  chmod 0755 "$root/usr/local/bin/$name"
  strip --strip-unneeded "$root/usr/local/bin/$name"
done

# Every library either binary loads, and the dynamic loader, at the path the
# loader will look for it (ldd prints "name => /path (addr)" or "/path (addr)").
{
  ldd "$dispatchd"
  ldd "$dispatchctl"
} | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
# On merged-/usr systems ldd may name /lib/... while the loader is asked for
# /lib64/...; the binaries' PT_INTERP is authoritative.
interp=$(readelf -l "$dispatchd" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
if [ -n "$interp" ] && [ ! -e "$root$interp" ]; then
  mkdir -p "$root$(dirname "$interp")"
  cp -L "$interp" "$root$interp"
fi

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
else
  echo "make-context.sh: /etc/ssl/certs/ca-certificates.crt missing (install ca-certificates);" \
    "https:// forwarding would not verify servers" >&2
  exit 1
fi
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

cp "$dockerfile" "$work/Dockerfile"
# Reproducible: fixed order, times and owners.
tar --create --file "$out" --directory "$work" --sort=name --mtime=@0 \
  --owner=0 --group=0 --numeric-owner Dockerfile rootfs
