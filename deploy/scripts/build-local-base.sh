#!/usr/bin/env bash
# Builds a minimal base image from this machine's own node + npm, for building deploy/Dockerfile
# where no registry is reachable:
#   deploy/scripts/build-local-base.sh [TAG]          (default TAG: ringtrain-base:local)
# The root filesystem holds node, npm, /bin/sh and the few coreutils the Dockerfile's build stage
# runs (and `tar`, which `kubectl cp` and deploy/k8s/fetch need), each with the shared libraries
# `ldd` reports, plus /etc/passwd with root and uid 1000.
set -euo pipefail

tag="${1:-ringtrain-base:local}"
node_bin="$(readlink -f "$(command -v node)")"
npm_root="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
[[ -f "$npm_root/bin/npm-cli.js" ]] || { echo "cannot find npm next to $(command -v npm)" >&2; exit 1; }

rootfs="$(mktemp -d /tmp/ringtrain-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# Copies a file to the same path under the rootfs, following symlinks.
put() { mkdir -p "$rootfs$(dirname "$2")" && cp -L "$1" "$rootfs$2"; }

# Copies an executable and every shared library it links (absolute paths from ldd).
put_binary() {
  local source="$1" target="$2" lib
  put "$source" "$target"
  while read -r lib; do
    [[ -e "$rootfs$lib" ]] || put "$lib" "$lib"
  done < <(ldd "$source" | grep -o '/[^ ]*' | sort -u)
}

put_binary "$node_bin" /usr/local/bin/node
put_binary "$(readlink -f "$(command -v dash || command -v sh)")" /bin/sh
for tool in env mkdir cp mv rm ls cat chmod ln tar; do
  put_binary "$(readlink -f "$(command -v "$tool")")" "/usr/bin/$tool"
done

mkdir -p "$rootfs/usr/local/lib/node_modules" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root" "$rootfs/home/node"
cp -R "$npm_root" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chmod 1777 "$rootfs/tmp"
chown 1000:1000 "$rootfs/home/node"
printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'CMD ["node"]' \
  - "$tag" > /dev/null
echo "built $tag from node $("$node_bin" --version) and npm $(node "$npm_root/bin/npm-cli.js" --version)"
