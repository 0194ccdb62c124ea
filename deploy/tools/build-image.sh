#!/usr/bin/env bash
# `make image` without a container daemon or registry: the same image as deploy/Containerfile
# (Debian bookworm minbase + CA certificates + OpenSSL, every deployed service's release
# binary in /usr/local/bin, uid 10001), assembled with buildah from a base made by debootstrap
# from Debian's packages. Then it runs a service's --help inside the image.
#
# Usage: deploy/tools/build-image.sh TARGET_DIR SERVICE... (make image passes them)
set -euo pipefail

target_dir=${1:?usage: build-image.sh TARGET_DIR SERVICE...}
shift
services=("$@")
[ ${#services[@]} -gt 0 ] || { echo "build-image: no services" >&2; exit 1; }
image=${IMAGE:-localhost/orderbus:dev}
# The cargo profile whose binaries go in (release for anything but trying the assembly out).
profile=${IMAGE_PROFILE:-release}
rootfs=${IMAGE_ROOTFS:-$HOME/.cache/orderbus/rootfs-bookworm}
# vfs + chroot isolation: no overlay mounts or user namespaces needed (works in a sandbox).
buildah=(buildah --storage-driver vfs)

for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-image: $tool is missing (apt-get install buildah debootstrap)" >&2
        exit 1
    }
done

if [ ! -e "$rootfs/.complete" ]; then
    echo "==> debootstrap bookworm (minbase + ca-certificates, libssl3) into $rootfs (once)"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase --include=ca-certificates,libssl3 bookworm "$rootfs" >/dev/null
    # Nothing in the image installs packages: drop the package caches and lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.complete"
fi

container=$("${buildah[@]}" from scratch)
trap '"${buildah[@]}" rm "$container" >/dev/null 2>&1 || true' EXIT
"${buildah[@]}" copy --quiet "$container" "$rootfs" / >/dev/null
"${buildah[@]}" run --isolation chroot "$container" -- rm -f /.complete
for service in "${services[@]}"; do
    binary="$target_dir/$profile/orderbus-$service"
    [ -x "$binary" ] || { echo "build-image: $binary not built" >&2; exit 1; }
    "${buildah[@]}" copy --quiet --chmod 0755 "$container" "$binary" "/usr/local/bin/orderbus-$service" >/dev/null
done
"${buildah[@]}" config --user 10001:10001 --port 8080 --entrypoint '[]' \
    --cmd "/usr/local/bin/orderbus-${services[0]} --help" \
    --label org.opencontainers.image.title=orderbus "$container"
"${buildah[@]}" commit --quiet "$container" "$image" >/dev/null
echo "==> $image"

# The image starts a service: its --help, as the unprivileged user, inside the image.
check=$("${buildah[@]}" from "$image")
trap '"${buildah[@]}" rm "$container" "$check" >/dev/null 2>&1 || true' EXIT
for service in "${services[@]}"; do
    "${buildah[@]}" run --isolation chroot --user 10001:10001 "$check" -- \
        "/usr/local/bin/orderbus-$service" --help >/dev/null
    echo "==> orderbus-$service --help runs in $image"
done
