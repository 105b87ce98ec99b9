#!/usr/bin/env bash
# kill -9 crash campaign (tests/crash_campaign.py): N trials per mode of
# "write under load, SIGKILL the server, restart it, check that every
# acknowledged event is still there".
#
#   scripts/crash-campaign.sh N [MODE...] [--seed S] [--json FILE]
#   MODE: open, policy, backup (default: all three)
#
# Uses build/release/foryou unless FORYOU is set. Exits with the campaign's
# status: 0 if every trial passed, 1 if one failed, 2 on a usage error.
set -euo pipefail
usage() { echo "usage: $0 N [open|policy|backup ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
case $1 in '' | *[!0-9]*) usage ;; esac
N=$1
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${FORYOU:-}" ]; then
  FORYOU=$ROOT/build/release/foryou
else
  case $FORYOU in /*) ;; */*) FORYOU=$PWD/$FORYOU ;; esac  # relative to the caller's directory
fi
export FORYOU
modes=()
while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do modes+=("$1"); shift; done
args=(--trials "$N" "$@")  # anything from the first option on goes to the campaign (--seed, --json)
[ ${#modes[@]} -eq 0 ] || args+=(--modes "${modes[@]}")
cd "$ROOT"
# exec: the campaign's exit status is this script's, and a SIGTERM sent to this
# script reaches the campaign, which then stops its servers.
exec python3 tests/crash_campaign.py "${args[@]}"
