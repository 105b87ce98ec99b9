#!/usr/bin/env bash
# Installs the Debian packages foryou needs to build, test and run.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config curl
  librocksdb-dev libhnswlib-dev libfaiss-dev libcpp-httplib-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libxxhash-dev libssl-dev libsodium-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev libboost-dev python3 python3-numpy
  libnats-dev nats-server libjemalloc-dev wrk prometheus
  libmicrohttpd-dev libevent-dev
  clang-14 libclang-rt-14-dev
  chromium)
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
# The npm packages of the contract test and of the console's browser test
# (puppeteer-core; the browser is Debian's chromium, above), at the versions
# their package-lock.json pins.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for dir in "$ROOT/tests/contract" "$ROOT/tests/console"; do
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || \
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "install-deps: npm ci in ${dir#"$ROOT"/}" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
