#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking Starling needs.
# Idempotent: does nothing when everything is present. Called by `./run`, so a fresh
# Debian 12 machine needs nothing else. Usage: scripts/install-deps.sh [--bench]
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libcaf-dev libprotobuf-dev protobuf-compiler libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libasio-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libssl-dev libldns-dev liburing-dev libnghttp2-dev libedit2 node-llhttp prometheus curl dnsutils procps iproute2 nftables clang-format
  nginx python3-grpcio
  clang libclang-rt-14-dev lld
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(serf haproxy wrk testssl.sh nftables iputils-ping nghttp2-client)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
