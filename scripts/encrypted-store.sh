#!/usr/bin/env bash
# Makes a store under a policy with encryption at rest and keeps it, by
# running `foryou bench` on it as region us (scripts/policy-us-sg.toml plus a
# service principal for the bench), for measuring starts of an encrypted
# store with scripts/start-time.sh (docs/PERFORMANCE.md, "Restart under
# encryption at rest").
#
#   scripts/encrypted-store.sh DIR [foryou bench options...]
#   scripts/encrypted-store.sh /tmp/r1m --videos 1000000 --users 1000000 --duration 2   # about 25 min
#
# Leaves DIR/store (the data dir), DIR/us.key (the region key), DIR/policy.toml
# and DIR/bench.json (the bench's report). DIR must not exist yet. Writes
# nothing in the repository.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FORYOU=${FORYOU:-$ROOT/build/release/foryou}
[ $# -ge 1 ] || { sed -n 2,13p "$0" >&2; exit 2; }
DIR=$1
shift
[ ! -e "$DIR" ] || { echo "encrypted-store: $DIR exists" >&2; exit 1; }
mkdir -p "$DIR"
"$FORYOU" keygen > "$DIR/us.key"
cp "$ROOT/scripts/policy-us-sg.toml" "$DIR/policy.toml"
cat >> "$DIR/policy.toml" <<EOF

[[principals]]
name = "bench-service"
key_sha256 = "$(printf %s bench-service-secret | sha256sum | cut -d' ' -f1)"
role = "service"
read = ["US"]
write = ["US"]
EOF
"$FORYOU" bench "$@" --data-dir "$DIR/store" \
  --server-arg=--policy "--server-arg=$DIR/policy.toml" --server-arg=--region --server-arg=us \
  --server-arg=--region-key-file "--server-arg=$DIR/us.key" \
  --header "Authorization: Bearer bench-service-secret" --header "X-Foryou-Jurisdiction: US" --json > "$DIR/bench.json"
echo "encrypted-store: $DIR/store (region key $DIR/us.key, policy $DIR/policy.toml, report $DIR/bench.json)" >&2
