#!/usr/bin/env bash
# `foryou bench` in cluster mode beside the same bench in embedded mode, same
# run, same policy, both with encryption at rest (docs/SCALING.md, "Measured
# at scale"):
#   1. embedded: one `foryou serve --policy ... --region us --region-key-file ...`
#   2. cluster: region us as a 3-server JetStream cluster and sg (1 server,
#      the approved backup's mirrors); one replica takes the whole bench
#      (load, ingest, feeds, restart, crash restart), then a second replica
#      joins with an empty data dir (the region's snapshot plus the tail),
#      and the feed load is split over both, then replica lag is probed;
#   3. `foryou restore --from-cluster` rebuilds region us from sg's mirrors
#      into an empty directory (restore_fetch_s, restore_replay_s).
#
#   scripts/cluster-scale-bench.sh [--quick | --videos N --users N ...]   # foryou bench's world options
#   SKIP_EMBEDDED=1 scripts/cluster-scale-bench.sh ...                    # the cluster run only
#
# Prints a table of both runs, then one JSON line {"embedded": ..., "cluster": ...}.
# Writes nothing in the repository (everything under a temporary directory,
# removed at the end). Needs nats-server (Debian package). Absolute numbers
# drift 2x on this shared machine: compare the columns of one run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FORYOU=${FORYOU:-$ROOT/build/release/foryou}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/foryou-cluster-scale-XXXXXX")
cleanup() {
  python3 "$ROOT/scripts/nats_topology.py" stop "$DIR/nats" > /dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
command -v nats-server > /dev/null || { echo "needs nats-server (scripts/install-deps.sh)" >&2; exit 1; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
"$FORYOU" keygen > "$DIR/us.key"
cat "$ROOT/scripts/policy-us-sg.toml" > "$DIR/policy.toml"
cat >> "$DIR/policy.toml" <<EOF2

[[principals]]
name = "bench-service"
key_sha256 = "$(sha bench-service-secret)"
role = "service"
read = ["US"]
write = ["US"]
EOF2
COMMON=(--server-arg=--policy "--server-arg=$DIR/policy.toml" --server-arg=--region --server-arg=us
        --server-arg=--region-key-file "--server-arg=$DIR/us.key"
        --header "Authorization: Bearer bench-service-secret" --header "X-Foryou-Jurisdiction: US" --json)

EMBEDDED='{}'
if [ -z "${SKIP_EMBEDDED:-}" ]; then
  echo "cluster-scale-bench: embedded mode (policy, encrypted)" >&2
  EMBEDDED=$("$FORYOU" bench "$@" "${COMMON[@]}" | tail -1)
fi

echo "cluster-scale-bench: starting NATS JetStream us:3 sg:1" >&2
python3 "$ROOT/scripts/nats_topology.py" start "$DIR/nats" us:3 sg:1 > "$DIR/topology.json"
URLS=$(python3 -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['regions']['us']))" "$DIR/topology.json")
echo "cluster-scale-bench: cluster mode (one replica, then a second joins)" >&2
CLUSTER=$("$FORYOU" bench "$@" "${COMMON[@]}" --server-arg=--cluster "--server-arg=$URLS" --join | tail -1)
du -sb "$DIR/nats" | cut -f1 > "$DIR/nats-bytes"
SG=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['regions']['sg'][0])" "$DIR/topology.json")
echo "cluster-scale-bench: restoring region us from sg's mirrors" >&2
RESTORE=$("$FORYOU" restore --from-cluster "$SG" --backup-region sg --source-region us --data-dir "$DIR/restored" \
          --region-key-file "$DIR/us.key" --json | tail -1)

python3 - "$EMBEDDED" "$CLUSTER" "$(cat "$DIR/nats-bytes")" "$RESTORE" <<'PY'
import json, sys
emb, clu = json.loads(sys.argv[1]), json.loads(sys.argv[2])
clu["nats_store_bytes"] = int(sys.argv[3])
rest = json.loads(sys.argv[4])
clu.update({"restore_records": rest["records"], "restore_keys": rest["keys"],
            "restore_fetch_s": rest["fetch_seconds"], "restore_replay_s": rest["replay_seconds"]})
rows = [("events", "{:.0f}"), ("ingest_events_per_s", "{:.0f}"), ("feed_qps", "{:.0f}"), ("feed_p99_ms", "{:.2f}"),
        ("freshness_ms_p99", "{:.2f}"), ("rss_mb", "{:.0f}"), ("bytes_per_user", "{:.0f}"), ("stop_s", "{:.2f}"),
        ("restart_s", "{:.2f}"), ("crash_tail_events", "{:.0f}"), ("crash_restart_s", "{:.2f}"), ("join_s", "{:.2f}"),
        ("feed_two_replicas_qps", "{:.0f}"), ("feed_two_replicas_p99_ms", "{:.2f}"), ("replica_lag_ms_p50", "{:.2f}"),
        ("replica_lag_ms_p99", "{:.2f}"), ("nats_store_bytes", "{:.0f}"), ("restore_records", "{:.0f}"),
        ("restore_keys", "{:.0f}"), ("restore_fetch_s", "{:.2f}"), ("restore_replay_s", "{:.2f}")]
print(f"{'metric (same run, this machine)':<34}{'embedded':>14}{'cluster':>14}")
for k, f in rows:
    cell = lambda d: f.format(d[k]) if k in d else "-"
    print(f"{k:<34}{cell(emb):>14}{cell(clu):>14}")
print(json.dumps({"embedded": emb, "cluster": clu}))
PY
