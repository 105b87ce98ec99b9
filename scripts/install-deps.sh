#!/usr/bin/env bash
# Installs the Debian packages foryou needs to build, test and run.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config curl
  librocksdb-dev libhnswlib-dev libcpp-httplib-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libxxhash-dev libssl-dev libsodium-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev libboost-dev python3
  libnats-dev nats-server libjemalloc-dev wrk
  clang-14 libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
