#!/usr/bin/env bash
# The docs' cheap commands, run as written in a scratch clone (issue 13):
# every command of a doc-test block must exit 0, and afterwards no tracked
# file of the clone may differ from the repository's.
#
#   bash scripts/doc-commands.sh          # FORYOU=/path/to/foryou to test another binary
#
# The marker. A fenced block whose info string is `sh doc-test`, optionally
# followed by `timeout=SECONDS` (default 20), is run; no other block is:
#
#   ```sh doc-test
#   build/release/foryou eval kuairec --file demo/kuairec/random.txt
#   ```
#
# Mark a block only when each of its commands finishes within ~20 s on this
# 2-core machine and needs nothing started outside the doc (no `make run`
# server, no network); a doc may start and stop its own servers (as
# examples/two-region/README.md does, by PID). The fence must start at the
# beginning of its line.
#
# How they run. The scratch directory holds `repo/` (a `git clone` of this
# repository's HEAD, plus its uncommitted changes and untracked files, committed
# there so that `git status` starts clean), `shared` (a symlink to ../shared
# beside this repository, when there is one) and `tmp/` (TMPDIR for the
# commands). repo/build/release/foryou is a copy of $FORYOU, default
# build/release/foryou (a copy, so that a rebuild during the run changes
# nothing). Each tracked *.md file with doc-test blocks gets one bash
# session (pipefail on, FORYOU unset), started at repo/, that runs its
# doc-test blocks in order, one command (a line, with its continuation and
# multi-line quotes) at a time: a block may use the variables, functions and
# background PIDs of an earlier block of the same file. A command over its
# timeout kills the session's process group and fails the rest of the file.
# Commands naming ../shared are skipped when there is no ../shared. Anything a
# session leaves running is killed at its end, and the scratch directory is
# removed (kept with DOC_COMMANDS_KEEP=1).
#
# Prints ok/FAIL/skip per command and a summary; exits 1 if anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${FORYOU:-$ROOT/build/release/foryou}
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
DEFAULT_TIMEOUT=20
BUDGET=${DOC_COMMANDS_BUDGET:-115}   # seconds for the whole run

die() { echo "doc-commands: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no binary at $BIN (make build, or set FORYOU)"
git -C "$ROOT" rev-parse --git-dir > /dev/null 2>&1 || die "$ROOT is not a git repository"

SCR=$(mktemp -d "${TMPDIR:-/tmp}/doc-commands.XXXXXX")
REPO="$SCR/repo"
W="$SCR/work"
SPID=""
cleanup() {
  if [ -n "$SPID" ]; then
    kill -TERM -- "-$SPID" 2> /dev/null
    wait "$SPID" 2> /dev/null
  fi
  if [ "${DOC_COMMANDS_KEEP:-0}" = 1 ]; then
    echo "doc-commands: kept $SCR"
  else
    rm -rf "$SCR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W" "$SCR/tmp"

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((10#$t / 1000)); }
START=$(now_ms)

# --- the scratch clone: HEAD, then the working tree's changes on top --------
git clone -q --no-hardlinks "$ROOT" "$REPO" || die "git clone failed"
git -C "$ROOT" diff --binary HEAD > "$W/worktree.patch"
if [ -s "$W/worktree.patch" ]; then
  git -C "$REPO" apply --binary "$W/worktree.patch" || die "cannot apply the working tree's changes to the clone"
fi
(cd "$ROOT" && git ls-files -z --others --exclude-standard | tar --null -T - -cf -) | tar -C "$REPO" -xf - \
  || die "cannot copy untracked files into the clone"
if [ -n "$(git -C "$REPO" status --porcelain)" ]; then
  git -C "$REPO" add -A
  git -C "$REPO" -c user.name=doc-commands -c user.email=doc-commands@localhost -c commit.gpgsign=false \
    commit -q --no-verify -m "doc-commands: the working tree under test" || die "cannot commit in the clone"
fi
if [ -d "$ROOT/../shared" ]; then
  ln -s "$(cd "$ROOT/../shared" && pwd)" "$SCR/shared"
fi
mkdir -p "$REPO/build/release"
cp "$BIN" "$REPO/build/release/foryou" || die "cannot copy $BIN"
echo "doc-commands: $(git -C "$ROOT" rev-parse --short HEAD) + working tree, cloned to $REPO; foryou = $BIN"
[ -e "$SCR/shared" ] || echo "doc-commands: no ../shared beside $ROOT: commands that read it are skipped"

# --- extract the commands ----------------------------------------------------
# Blocks as "@@ FILE LINE TIMEOUT" headers followed by "LINE<TAB>TEXT" lines.
mapfile -t DOCS < <(cd "$REPO" && { git ls-files 'README.md'; git ls-files '*.md' | grep -vx 'README.md' | sort; })
for doc in "${DOCS[@]}"; do
  awk -v f="$doc" -v def="$DEFAULT_TIMEOUT" '
    !inb && /^```sh doc-test([ \t]|$)/ {
      t = def
      if (match($0, /timeout=[0-9]+/)) t = substr($0, RSTART + 8, RLENGTH - 8)
      print "@@ " f " " FNR " " t; inb = 1; next
    }
    inb && /^```/ { inb = 0; next }
    inb { print FNR "\t" $0 }
  ' "$REPO/$doc"
done > "$W/blocks"

N=0
declare -a C_FILE C_LINE C_TIMEOUT C_LABEL
add_cmd() {  # text in $acc, first line in $acc_line
  N=$((N + 1))
  printf '%s\n' "$acc" > "$W/cmd.$N"
  C_FILE[N]=$file
  C_LINE[N]=$acc_line
  C_TIMEOUT[N]=$timeout
  local first=${acc%%$'\n'*}
  first=${first#"${first%%[![:space:]]*}"}
  [ "$first" != "$acc" ] && first="$first ..."
  [ ${#first} -gt 100 ] && first="${first:0:97}..."
  C_LABEL[N]=$first
}
file="" timeout="" acc="" acc_line=""
while IFS= read -r row; do
  if [[ $row == "@@ "* ]]; then
    [ -n "$acc" ] && die "${file}:${acc_line}: a command does not end within its block"
    read -r _ file _ timeout <<< "$row"
    continue
  fi
  lineno=${row%%$'\t'*}
  text=${row#*$'\t'}
  if [ -z "$acc" ]; then
    [[ $text =~ ^[[:space:]]*(#.*)?$ ]] && continue
    acc=$text
    acc_line=$lineno
  else
    acc+=$'\n'$text
  fi
  # A command is complete when it does not end in a backslash and bash can parse it.
  if [[ $acc != *\\ ]] && bash -n -c "$acc" 2> /dev/null; then
    add_cmd
    acc=""
  fi
done < "$W/blocks"
[ -n "$acc" ] && die "${file}:${acc_line}: a command does not end within its block"
[ "$N" -gt 0 ] || die "no doc-test blocks found"

# --- run them: one bash session per file -------------------------------------
OK=0 FAILED=0 SKIPPED=0
declare -a FAILURES
report() {  # STATUS I MS [NOTE]
  local secs
  secs=$(printf '%d.%d' $(($3 / 1000)) $((($3 % 1000) / 100)))
  printf '%-4s %6ss  %s:%s  %s%s\n' "$1" "$secs" "${C_FILE[$2]}" "${C_LINE[$2]}" "${C_LABEL[$2]}" "${4:+  ($4)}"
  case $1 in
    ok) OK=$((OK + 1)) ;;
    skip) SKIPPED=$((SKIPPED + 1)) ;;
    *) FAILED=$((FAILED + 1)); FAILURES+=("${C_FILE[$2]}:${C_LINE[$2]}  ${C_LABEL[$2]}${4:+  ($4)}") ;;
  esac
}
show_output() {  # the tail of what a failed command printed
  [ -s "$1" ] && tail -n 15 "$1" | sed 's/^/       | /'
}
start_session() {
  local fifo="$W/session.$1.in"
  mkfifo "$fifo"
  (cd "$REPO" && exec env -u FORYOU -u FORYOU_REGION_KEY TMPDIR="$SCR/tmp" \
    setsid bash --noprofile --norc -o pipefail < "$fifo" > "$W/session.$1.log" 2>&1) &
  SPID=$!
  exec 7> "$fifo"
}
end_session() {
  exec 7>&-
  local deadline=$(($(now_ms) + 5000))
  while kill -0 "$SPID" 2> /dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
  if kill -0 -- "-$SPID" 2> /dev/null; then
    echo "     (processes left running by $1 were killed)"
    kill -TERM -- "-$SPID" 2> /dev/null
    sleep 0.5
    kill -KILL -- "-$SPID" 2> /dev/null
  fi
  wait "$SPID" 2> /dev/null
  SPID=""
}

i=1
session=0
while [ "$i" -le "$N" ]; do
  doc=${C_FILE[i]}
  session=$((session + 1))
  start_session "$session"
  dead=""
  while [ "$i" -le "$N" ] && [ "${C_FILE[i]}" = "$doc" ]; do
    out="$W/out.$i"
    rc_file="$W/rc.$i"
    if [ -n "$dead" ]; then
      report FAIL "$i" 0 "not run: $dead"
    elif [ ! -e "$SCR/shared" ] && grep -q '\.\./shared' "$W/cmd.$i"; then
      report skip "$i" 0 "no ../shared"
    elif [ $(($(now_ms) - START)) -gt $((BUDGET * 1000)) ]; then
      report FAIL "$i" 0 "not run: the run is over its ${BUDGET} s budget"
    else
      t0=$(now_ms)
      # (in a subshell: a session that is gone kills it with SIGPIPE, not this script)
      (
        printf '{\n%s\n} > %q 2>&1 < /dev/null\n' "$(cat "$W/cmd.$i")" "$out"
        # shellcheck disable=SC2016  # $? is the session's, expanded there
        printf '__rc=$?; echo "$__rc" > %q.tmp; mv %q.tmp %q\n' "$rc_file" "$rc_file" "$rc_file"
      ) >&7 2> /dev/null
      deadline=$((t0 + C_TIMEOUT[i] * 1000))
      while [ ! -e "$rc_file" ]; do
        if ! kill -0 "$SPID" 2> /dev/null; then
          dead="the session of $doc ended"
          break
        fi
        if [ "$(now_ms)" -gt "$deadline" ]; then
          dead="a command of $doc timed out"
          kill -TERM -- "-$SPID" 2> /dev/null
          sleep 0.5
          kill -KILL -- "-$SPID" 2> /dev/null
          break
        fi
        sleep 0.05
      done
      ms=$(($(now_ms) - t0))
      if [ -e "$rc_file" ]; then
        rc=$(cat "$rc_file")
        if [ "$rc" = 0 ]; then
          report ok "$i" "$ms"
        else
          report FAIL "$i" "$ms" "exit $rc"
          show_output "$out"
        fi
      elif [[ $dead == *"timed out" ]]; then
        report FAIL "$i" "$ms" "timed out after ${C_TIMEOUT[i]} s"
        show_output "$out"
      else
        report FAIL "$i" "$ms" "$dead"
        show_output "$out"
        show_output "$W/session.$session.log"
      fi
    fi
    i=$((i + 1))
  done
  end_session "$doc"
done

# --- nothing tracked may have changed ----------------------------------------
changed=$(git -C "$REPO" status --porcelain --untracked-files=no)
if [ -n "$changed" ]; then
  echo "FAIL  tracked files changed by the commands:"
  printf '%s\n' "$changed" | sed 's/^/       | /'
  FAILED=$((FAILED + 1))
  FAILURES+=("tracked files changed: $(printf '%s' "$changed" | tr '\n' ' ')")
else
  echo "ok    no tracked file changed (git status in the clone)"
fi
untracked=$(git -C "$REPO" status --porcelain | grep '^??' || true)
[ -n "$untracked" ] && printf 'note: untracked files left in the clone:\n%s\n' "$(printf '%s\n' "$untracked" | sed 's/^/       | /')"

secs=$((($(now_ms) - START) / 1000))
echo "doc-commands: $OK ok, $FAILED FAIL, $SKIPPED skipped; $N commands from $session docs in $secs s"
if [ "$FAILED" -gt 0 ]; then
  printf '  FAIL %s\n' "${FAILURES[@]}"
  exit 1
fi
