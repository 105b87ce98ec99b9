#!/usr/bin/env bash
# Installs the Debian packages foryou needs to build, test and run.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config curl
  librocksdb-dev libhnswlib-dev libcpp-httplib-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libxxhash-dev libssl-dev libsodium-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev libboost-dev python3
  libnats-dev nats-server libjemalloc-dev wrk prometheus
  clang-14 libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm for the API contract test (tests/contract): the machine's
# own when it has them (redocly needs Node.js 20.19 or newer), else Debian's.
command -v npm > /dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # prometheus: for promtool (tests/contract checks /metrics with it).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The contract test's npm packages, at the versions package-lock.json pins.
CONTRACT="$(cd "$(dirname "$0")/.." && pwd)/tests/contract"
if [ ! -f "$CONTRACT/node_modules/.package-lock.json" ] || \
   [ "$CONTRACT/package-lock.json" -nt "$CONTRACT/node_modules/.package-lock.json" ]; then
  echo "install-deps: npm ci in tests/contract" >&2
  (cd "$CONTRACT" && npm ci --no-audit --no-fund --loglevel=error)
fi
