#!/bin/sh
# Installs convox-build-off-cluster from a release: the static binary for
# this machine's OS and CPU, its checksum verified, installed atomically.
#
#   sh install.sh [--version vX.Y.Z] [--to DIR]
#   wget -qO- https://github.com/OWNER/convox-build-off-cluster/releases/latest/download/install.sh | sh
#
# --version   the release (default: the latest)
# --to        where the binary goes (default /usr/local/bin, or ~/.local/bin
#             when that is not writable)
# CONVOX_OFF_CLUSTER_DOWNLOAD_URL: the folder that holds a release's assets
#   (default: the GitHub release of that version).
# CONVOX_OFF_CLUSTER_REPO: the GitHub repository (OWNER/NAME) of the default.
# CONVOX_OFF_CLUSTER_CPU: the CPU to install for (default: uname -m).
#
# POSIX sh: runs under busybox's sh with wget and no curl, and on macOS.
# A checksum mismatch, a missing asset, or an unknown OS or CPU exits
# non-zero, names the cause, and installs nothing.
set -eu

repo=${CONVOX_OFF_CLUSTER_REPO:-convox-off-cluster/convox-build-off-cluster}
name=convox-build-off-cluster
version=
to=

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || die "--version needs a value (vX.Y.Z)"; version=$2; shift 2 ;;
    --version=*) version=${1#--version=}; shift ;;
    --to) [ $# -ge 2 ] || die "--to needs a directory"; to=$2; shift 2 ;;
    --to=*) to=${1#--to=}; shift ;;
    -h|--help) sed -n '2,19p' "$0" 2>/dev/null || true; exit 0 ;;
    *) die "unknown argument: $1 (usage: sh install.sh [--version vX.Y.Z] [--to DIR])" ;;
  esac
done

os=$(uname -s)
cpu=${CONVOX_OFF_CLUSTER_CPU:-$(uname -m)}
case "$cpu" in
  x86_64|amd64) arch=x86_64 ;;
  aarch64|arm64) arch=aarch64 ;;
  *) die "no release for this CPU: $cpu (there are x86_64 and aarch64 builds)" ;;
esac
case "$os" in
  Linux) target=$arch-unknown-linux-musl ;;
  Darwin) target=$arch-apple-darwin ;;
  *) die "no release for this OS: $os (there are Linux and macOS builds)" ;;
esac
asset=$name-$target.tar.gz

if [ -n "${CONVOX_OFF_CLUSTER_DOWNLOAD_URL:-}" ]; then
  base=${CONVOX_OFF_CLUSTER_DOWNLOAD_URL%/}
elif [ -n "$version" ]; then
  base=https://github.com/$repo/releases/download/$version
else
  base=https://github.com/$repo/releases/latest/download
fi

if [ -z "$to" ]; then
  if [ -w /usr/local/bin ]; then to=/usr/local/bin; else to=$HOME/.local/bin; fi
fi

# No /dev/null below: it runs in a root that holds only busybox.
have() { [ -n "$(command -v "$1" || true)" ]; }

fetch() { # URL FILE
  if have curl; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif have wget; then
    wget -q -O "$2" "$1"
  else
    die "needs curl or wget to download $1"
  fi
}

sha256() { # FILE: prints the hex digest
  if have sha256sum; then
    sha256sum "$1" | cut -d' ' -f1
  elif have shasum; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "needs sha256sum or shasum to verify the download"
  fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/convox-off-cluster.XXXXXX") || die "cannot make a temporary directory"
trap 'rm -rf "$tmp"' EXIT INT TERM
fetch "$base/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $base/SHA256SUMS"
fetch "$base/$asset" "$tmp/$asset" || die "cannot download $base/$asset (no release asset for $target there?)"
want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")
[ -n "$want" ] || die "SHA256SUMS from $base names no $asset"
got=$(sha256 "$tmp/$asset")
[ "$got" = "$want" ] || die "checksum failed for $asset: expected $want, got $got; nothing installed"

mkdir "$tmp/x"
(cd "$tmp/x" && gzip -dc "../$asset" | tar -xf - "$name") || die "cannot unpack $asset"
[ -f "$tmp/x/$name" ] || die "$asset holds no $name"
chmod 0755 "$tmp/x/$name"
mkdir -p "$to" || die "cannot create $to"
# Atomic: a temporary name in the same directory, then a rename.
cp "$tmp/x/$name" "$to/.$name.new.$$" || die "cannot write to $to (try --to DIR, or sudo)"
mv -f "$to/.$name.new.$$" "$to/$name" || { rm -f "$to/.$name.new.$$"; die "cannot install into $to"; }
echo "installed $to/$name ($target${version:+, $version})"
case ":$PATH:" in *":$to:"*) ;; *) echo "note: $to is not on PATH" ;; esac
