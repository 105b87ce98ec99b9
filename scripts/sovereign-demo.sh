#!/usr/bin/env bash
# Two regions on this machine, the way docs/SOVEREIGNTY.md describes them:
# us (primary for US users, the KuaiRec demo world) backs up to sg, the one
# region the policy approves. Walks through what an operator and an auditor
# see: a feed with an API key, 421 for the wrong region, erasure, the audit
# log, the residency reports, then kill -9 of us and a restore from sg.
#
#   scripts/sovereign-demo.sh [--keep]     # --keep: leave the regions running
#
# Exits non-zero as soon as something does not hold, so CI runs it too
# (ctest: SovereignDemoScript). Uses build/release/foryou unless FORYOU is set.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FORYOU=${FORYOU:-$ROOT/build/release/foryou}
KEEP=${1:-}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/foryou-sovereign-XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  if [ "$KEEP" != "--keep" ]; then
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$rc" -eq 0 ]; then rm -rf "$DIR"; else echo "logs kept in $DIR" >&2; fi
  fi
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

say "keys and policy in $DIR"
"$FORYOU" keygen > "$DIR/us.region-key"
"$FORYOU" keygen > "$DIR/sg.region-key"
echo "us-operator-secret" > "$DIR/us-operator.key"
cat "$ROOT/scripts/policy-us-sg.toml" > "$DIR/policy.toml"
cat >> "$DIR/policy.toml" <<EOF

[[principals]]
name = "us-feed-service"
key_sha256 = "$(sha us-service-secret)"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "us-operator"
key_sha256 = "$(sha us-operator-secret)"
role = "replication"
read = ["US"]
write = ["US"]
region = "us"
EOF

start() {  # name data-dir args... ; sets PORT
  local name=$1 data=$2
  shift 2
  "$FORYOU" serve --listen 127.0.0.1:0 --data-dir "$data" --log-level warn "$@" > "$DIR/$name.out" 2> "$DIR/$name.err" &
  PIDS+=($!)
  LASTPID=$!
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$DIR/$name.out" 2>/dev/null || true)
    [ -n "$PORT" ] && return 0
    kill -0 "$LASTPID" 2>/dev/null || { cat "$DIR/$name.err" >&2; fail "$name did not start"; }
    sleep 0.1
  done
  fail "$name did not print its address"
}

say "region sg (holds US backups), then region us with the demo world, backing up to sg"
start sg "$DIR/sg" --policy "$DIR/policy.toml" --region sg --region-key-file "$DIR/sg.region-key"
SG=$PORT; SGPID=$LASTPID
# --backup-wait-ms: the first write also waits for sg to catch up with the demo world.
start us "$DIR/us" --policy "$DIR/policy.toml" --region us --region-key-file "$DIR/us.region-key" --demo \
  --backup-to "sg=http://127.0.0.1:$SG" --backup-api-key-file "$DIR/us-operator.key" --backup-wait-ms 60000
US=$PORT; USPID=$LASTPID
echo "us on :$US, sg on :$SG"
H=(-H "Authorization: Bearer us-service-secret" -H "X-Foryou-Jurisdiction: US")

say "a feed for u14, with the US service's key"
curl -sf "${H[@]}" "localhost:$US/v1/feed?user_id=u14&n=3" | head -c 400 || fail "feed"
echo
code=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$US/v1/feed?user_id=u14&n=3")
echo "without a key: HTTP $code"; [ "$code" = 401 ] || fail "expected 401"
code=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "localhost:$SG/v1/feed?user_id=u14&n=3")
echo "US data asked of sg: HTTP $code (misdirected, never proxied)"; [ "$code" = 421 ] || fail "expected 421"

say "a write is acknowledged once sg holds it"
curl -sf -D - -o /dev/null "${H[@]}" -H 'Content-Type: application/json' \
  -d '{"events":[{"user_id":"alice-wonderland-42","video_id":"v1305","type":"like"}]}' "localhost:$US/v1/events" |
  tr -d '\r' | grep -i '^x-foryou-backup' | tee "$DIR/ack"
grep -qi confirmed "$DIR/ack" || fail "expected X-Foryou-Backup: confirmed"

say "erase alice-wonderland-42 (keys shredded here and, through the log, in sg)"
curl -sf -X DELETE "${H[@]}" "localhost:$US/v1/users/alice-wonderland-42" || fail "erasure"
echo
grep -rl "alice-wonderland-42" "$DIR/us" "$DIR/sg" && fail "a user id is stored in the clear" ||
  echo "alice-wonderland-42 is in no file of either store"

say "kill -9 us; restore it from sg with the US region key"
kill -9 "$USPID"
{ wait "$USPID"; } 2>/dev/null || true
"$FORYOU" restore --from "http://127.0.0.1:$SG" --source-region us --data-dir "$DIR/us-restored" \
  --api-key-file "$DIR/us-operator.key" --region-key-file "$DIR/us.region-key"

say "the auditor: us's audit log, its erasures, and sg's backup holdings"
"$FORYOU" audit verify --data-dir "$DIR/us" > "$DIR/head.json" || fail "audit log does not verify"
cat "$DIR/head.json"
"$FORYOU" audit show --data-dir "$DIR/us" --action user.erase
kill "$SGPID" 2>/dev/null || fail "sg is not running any more (see $DIR/sg.err)"  # stopped, so its store can be read
{ wait "$SGPID"; } 2>/dev/null || true
"$FORYOU" residency report --data-dir "$DIR/sg" --policy "$DIR/policy.toml" --region sg \
  --region-key-file "$DIR/sg.region-key" || fail "sg holds something the policy does not allow"
"$FORYOU" residency report --data-dir "$DIR/us-restored" --policy "$DIR/policy.toml" --region us \
  --region-key-file "$DIR/us.region-key" || fail "the restored us holds something the policy does not allow"

say "the restored us serves u14, and alice-wonderland-42 stays erased"
start us2 "$DIR/us-restored" --policy "$DIR/policy.toml" --region us --region-key-file "$DIR/us.region-key"
curl -sf "${H[@]}" "localhost:$PORT/v1/users/u14" | head -c 200 || fail "u14 is not back"
echo
code=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "localhost:$PORT/v1/users/alice-wonderland-42")
echo "alice-wonderland-42: HTTP $code"; [ "$code" = 404 ] || fail "an erased user came back"
say "all checks held"
