#!/usr/bin/env bash
# Builds a debian:bookworm-slim equivalent from Debian's archive with debootstrap and imports it
# into the local Docker engine, for machines that reach Debian's archive but no container
# registry. Where a registry is reachable, plain debian:bookworm-slim does the same job.
#
#   docker/base/make-base-image.sh [TAG]        (default TAG: burrow-base:bookworm-slim)
#
# Needs root and debootstrap. The mirror is the one this machine's apt uses (MIRROR overrides).
set -euo pipefail

TAG=${1:-burrow-base:bookworm-slim}
SUITE=bookworm

host_mirror() {
    # The first Debian URI in this machine's apt sources, deb822 or one-line format.
    local uri
    uri=$(grep -hs -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -1 |
          awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hs -E '^deb .*/debian/? ' /etc/apt/sources.list \
                               /etc/apt/sources.list.d/*.list | head -1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(host_mirror)}
SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/debian*}/debian-security}

[ "$(id -u)" -eq 0 ] || { echo "make-base-image: needs root (debootstrap)" >&2; exit 2; }
command -v debootstrap >/dev/null ||
    { echo "make-base-image: install debootstrap (apt-get install debootstrap)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

# Like the official slim images: never unpack documentation, manuals or translations, so the
# packages later layers install stay small too. Copyright files stay (the licences ask for it).
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG

echo "make-base-image: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }

# What debootstrap unpacked before the exclusions applied (its first stage ignores them).
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"*
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb
rm -f "$root/var/log/"*.log "$root/etc/hostname" "$root/etc/resolv.conf"

rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

# Image hygiene as in the official images: no package caches or translations in layers.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
// Layers never reuse apt's caches: drop them after every dpkg run.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
cat >"$root/etc/apt/apt.conf.d/docker-small-lists" <<'CFG'
Acquire::GzipIndexes "true";
Acquire::Languages "none";
APT::Install-Recommends "false";
CFG
# A snapshot mirror serves Release files past their Valid-Until date; the host's apt is told
# to accept them, and the image must be told the same or every apt-get update fails.
if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
    cat >"$root/etc/apt/apt.conf.d/docker-snapshot" <<'CFG'
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
CFG
fi

tar --numeric-owner -C "$root" -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
echo "make-base-image: $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=si))"
