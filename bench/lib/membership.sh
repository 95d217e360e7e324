# shellcheck shell=bash
# Helpers shared by the membership benchmarks (bench/membership_vs_serf.sh,
# bench/membership_loss.sh). Sourced, not run. Each agent writes "<unix time> <member>" lines
# into <dir>/<name>.joins and <dir>/<name>.failed: serf through the event handler that
# write_serf_handler makes, Starling through split_events over its --event-log.
#
# Variables the caller may set: bench_exec (array, default empty) is prefixed to commands
# that must run where the agents run (`ip netns exec NS` for a private namespace).

bench_exec=(${bench_exec[@]+"${bench_exec[@]}"})

now() { date +%s.%N; }

# free_port VAR: sets VAR to a free TCP+UDP port on 127.0.0.1 from a random high range (serf
# needs explicit ports), never one handed out before. It runs in the caller's shell (not in
# $(...)) so that the ports it handed out are remembered: agents bind them only later.
used_ports=" "
free_port() {
  local p i
  for ((i = 0; i < 1000; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ $used_ports == *" $p "* ]] && continue
    if ! ${bench_exec[@]+"${bench_exec[@]}"} ss -Htanu "( sport = :$p )" | grep -q .; then
      used_ports+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Latest time at which every agent (one file per agent, lines "<ts> <member>") has seen all
# n-1 others; empty if some agent has not.
converged_at() {
  local n=$1; shift
  local f latest="" t
  for f in "$@"; do
    t=$(awk -v need=$((n - 1)) -v self="$(basename "$f" .joins)" \
      '$2 != self && !seen[$2]++ { c++; if (c == need) { print $1; exit } }' "$f" 2>/dev/null)
    [[ -n $t ]] || { echo ""; return; }
    if [[ -z $latest ]] || awk -v a="$t" -v b="$latest" 'BEGIN { exit !(a > b) }'; then latest=$t; fi
  done
  echo "$latest"
}

# Latest time at which every survivor file has a line for `victim`; empty if not all have.
detected_at() {
  local victim=$1; shift
  local f latest="" t
  for f in "$@"; do
    t=$(awk -v v="$victim" '$2 == v { print $1; exit }' "$f" 2>/dev/null)
    [[ -n $t ]] || { echo ""; return; }
    if [[ -z $latest ]] || awk -v a="$t" -v b="$latest" 'BEGIN { exit !(a > b) }'; then latest=$t; fi
  done
  echo "$latest"
}

wait_for() { # wait_for <deadline seconds> <command...>: polls until the command prints something
  local limit=$1; shift
  local end=$(($(date +%s) + limit)) r
  while (($(date +%s) < end)); do
    r=$("$@")
    if [[ -n $r ]]; then echo "$r"; return 0; fi
    sleep 0.05
  done
  return 1
}

mean_rss() { # mean_rss pid... -> KiB
  local total=0 p r
  for p in "$@"; do r=$(ps -o rss= -p "$p" 2>/dev/null || echo 0); total=$((total + ${r:-0})); done
  echo $((total / $#))
}

# Starling's JSON event logs -> the same "<ts> <member>" joins/failed files serf's handler
# writes. split_events <dir> <n>
split_events() {
  local dir=$1 n=$2 i f
  for ((i = 0; i < n; i++)); do
    f="$dir/n$i.events"
    [[ -f $f ]] || continue
    sed -nE 's/.*"ts": *([0-9.]+).*"event": *"joined".*"member": *"([^"]+)".*/\1 \2/p' "$f" >"$dir/n$i.joins"
    sed -nE 's/.*"ts": *([0-9.]+).*"event": *"failed".*"member": *"([^"]+)".*/\1 \2/p' "$f" >"$dir/n$i.failed"
  done
}

# write_serf_handler <dir>: <dir>/handler.sh, serf's event handler for member-join and
# member-failed, appending "<unix time> <member>" per member to <dir>/<self>.joins|.failed.
write_serf_handler() {
  cat >"$1/handler.sh" <<'H'
#!/bin/sh
# One line per member: "<unix time> <member name>", into joins or failed file of this agent.
dir=$(dirname "$0")
case "$SERF_EVENT" in
  member-join) f="$dir/$SERF_SELF_NAME.joins" ;;
  member-failed) f="$dir/$SERF_SELF_NAME.failed" ;;
  *) exit 0 ;;
esac
while read -r name rest; do echo "$(date +%s.%N) $name" >> "$f"; done
H
  chmod +x "$1/handler.sh"
}

# Median of the numbers on stdin (one per line).
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Largest of the numbers on stdin (one per line).
maximum() { sort -g | tail -n 1; }

# bench_work_dir <out>: sets $work to <out> (created, kept) or to a new temporary directory
# (removed at exit), and installs the exit trap that kills every pid in $pids first.
bench_work_dir() {
  if [[ -n $1 ]]; then
    mkdir -p "$1"; work=$(cd "$1" && pwd); keep=1
  else
    work=$(mktemp -d /tmp/starling-bench.XXXXXX); keep=0
  fi
  pids=()
  trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ((keep)) || rm -rf "$work"
}
