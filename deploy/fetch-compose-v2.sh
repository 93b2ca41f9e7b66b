#!/usr/bin/env bash
# Puts Compose v2 at target/compose-v2/docker-compose, for the Compose test's
# v2 run (tests/tests/e2e/deploy.rs): Debian trixie's `docker-compose` package
# (2.x, a static Go binary that runs standalone as well as as a docker
# plugin), downloaded with apt from the machine's own Debian mirror through
# a private package list, so that the system's sources and lists stay as they
# are. Needs root (apt's download), apt-get and dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/compose-v2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The mirror this machine already uses for Debian.
uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
if [ -z "$uri" ]; then
    uri=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
fi
if [ -z "$uri" ]; then
    echo "fetch-compose-v2.sh: no Debian mirror in /etc/apt/sources.list(.d)" >&2
    exit 1
fi
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources"
printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >"$work/sources/trixie.sources"
apt_opts=(
    -o Dir::Etc::SourceList=/dev/null
    -o "Dir::Etc::SourceParts=$work/sources"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o APT::Sandbox::User=root
)
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" download -qq docker-compose/trixie)
dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
mkdir -p "$out"
cp "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$out/docker-compose"
"$out/docker-compose" version
