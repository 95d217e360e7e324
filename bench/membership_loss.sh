#!/usr/bin/env bash
# False deaths under packet loss and CPU starvation: n Starling agents and n serf agents
# (Debian's serf, memberlist, -profile lan) side by side in one private network namespace,
# in the same run (issue 15, item 3; shared/BENCH-NOTES.md, shared/FAULTS.md).
#
# Each run: a fresh set of agents converges on the namespace's loopback with no loss, then for
# --duration seconds an nftables rule on the loopback's output drops --loss percent of all
# packets (both systems' UDP and TCP alike), and with --stop "S/P" one agent of each system
# (the same index) is SIGSTOPped S seconds out of every P. Nobody dies, so every failed event
# after convergence is a false death. Counted per system, from convergence to the end of the
# window:
#   false deaths     failed events in all views (serf: its event handler; Starling: its
#                    --event-log), and how many distinct members they were about
#   raised           suspicions raised by a prober itself (serf: "Suspect X has failed, no acks
#                    received" log lines; Starling: the `suspicions` counter of `starling stats`)
#   suspect events   suspected events in all views (Starling only: memberlist logs no event
#                    when it learns a suspicion by gossip)
#   refutations      a member refuting a suspicion of itself (serf: "Refuting a suspect
#                    message"; Starling: the `refutations` counter)
# A table per run, then the median and the maximum over the runs. The load average is printed
# at each run's start and end: on a shared machine CPU starvation itself causes suspicions.
#
# Usage (as root, needs ip, nft, serf): bench/membership_loss.sh [--loss 30] [--stop 2/8]
#          [--runs 5] [--duration 120] [--n 20] [--systems "serf starling"]
#          [--starling-config FILE] [--out DIR]
#   bench/membership_loss.sh --loss 30 --runs 5          # the issue's proof
#   bench/membership_loss.sh --loss 10 --runs 3
#   bench/membership_loss.sh --loss 0 --stop 2/8 --runs 3
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
loss=30
stop=""
runs=5
duration=120
n=20
systems="serf starling"
starling_config=""
out=""
starling=${STARLING_BIN:-$top/build/bin/starling}
deadline_s=120

while (($#)); do
  case "$1" in
    --loss) loss=$2; shift 2 ;;
    --stop) stop=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --starling-config) starling_config=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if ! [[ $loss =~ ^[0-9]+$ ]] || ((loss >= 100)); then echo "--loss takes a percentage 0-99" >&2; exit 2; fi
[[ $runs =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $n =~ ^[1-9][0-9]*$ ]] ||
  { echo "--runs, --duration and --n take positive integers" >&2; exit 2; }
((n >= 3)) || { echo "--n must be at least 3" >&2; exit 2; }
stop_for=0 stop_every=0
if [[ -n $stop ]]; then
  [[ $stop =~ ^([0-9]+)/([0-9]+)$ ]] || { echo "--stop takes S/P in seconds, e.g. 2/8" >&2; exit 2; }
  stop_for=${BASH_REMATCH[1]} stop_every=${BASH_REMATCH[2]}
  ((stop_for > 0 && stop_for < stop_every)) || { echo "--stop: need 0 < S < P" >&2; exit 2; }
fi
((EUID == 0)) || { echo "needs root (ip netns, nft)" >&2; exit 2; }
for c in ip nft ss; do command -v "$c" >/dev/null || { echo "$c is not installed (apt-get install -y iproute2 nftables)" >&2; exit 2; }; done
[[ $systems != *serf* ]] || command -v serf >/dev/null || { echo "serf is not installed (scripts/install-deps.sh --bench)" >&2; exit 2; }
[[ $systems != *starling* || -x $starling ]] || { echo "starling binary not found at $starling (make build)" >&2; exit 2; }

ns="starling-loss-$$"
bench_exec=(ip netns exec "$ns")
# shellcheck source=bench/lib/membership.sh
source "$here/lib/membership.sh"

if [[ -n $out ]]; then
  mkdir -p "$out"; work=$(cd "$out" && pwd); keep=1
else
  work=$(mktemp -d /tmp/starling-loss.XXXXXX); keep=0
fi
pids=()
stopper=""
ns_made=0
cleanup() {
  if [[ -n $stopper ]]; then kill "$stopper" 2>/dev/null || true; fi
  for p in ${pids[@]+"${pids[@]}"}; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((ns_made)); then ip netns del "$ns" 2>/dev/null || true; fi
  ((keep)) || rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
ns_made=1
"${bench_exec[@]}" ip link set lo up

# loss_on / loss_off: the drop rule on the namespace's loopback output, loaded in one piece
# (a syntax error stops the script instead of passing silently).
loss_on() {
  ((loss > 0)) || return 0
  "${bench_exec[@]}" nft -f - <<NFT
table inet loss {
  chain out {
    type filter hook output priority 0; policy accept;
    numgen random mod 100 < $loss drop;
  };
}
NFT
}
loss_off() {
  ((loss > 0)) || return 0
  "${bench_exec[@]}" nft delete table inet loss 2>/dev/null || true
}

# Checks once that the rule drops what it should: ICMP echo round trips cross lo twice,
# so N% per packet loses about 1 - (1 - N/100)^2 of them.
check_loss() {
  ((loss > 0)) && command -v ping >/dev/null || return 0
  loss_on
  local seen
  seen=$("${bench_exec[@]}" ping -q -c 300 -i 0.005 -W 1 127.0.0.1 2>/dev/null |
    sed -nE 's/.* ([0-9.]+)% packet loss.*/\1/p') || true
  loss_off
  awk -v l="$loss" -v s="${seen:-?}" \
    'BEGIN { printf "loss check: %d%% per packet asked, ping round trips lost %s%% (expected ~%.0f%%)\n", l, s, 100 * (1 - (1 - l / 100) ^ 2) }'
}

# start_serf <dir> -> pids in agent_pids
start_serf() {
  local dir=$1 seed_port i port rpc
  mkdir -p "$dir"
  write_serf_handler "$dir"
  free_port seed_port
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then port=$seed_port; else free_port port; fi
    free_port rpc
    "${bench_exec[@]}" serf agent -node "n$i" -bind "127.0.0.1:$port" -rpc-addr "127.0.0.1:$rpc" \
      -profile lan -retry-join "127.0.0.1:$seed_port" -retry-interval 1s \
      -event-handler "member-join,member-failed=$dir/handler.sh" -log-level info \
      >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
  done
}

# start_starling <dir> -> pids in agent_pids
start_starling() {
  local dir=$1 seed_port i gossip cfg=()
  mkdir -p "$dir"
  [[ -n $starling_config ]] && cfg=(--config "$starling_config")
  free_port seed_port
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then gossip="127.0.0.1:$seed_port"; else gossip="127.0.0.1:0"; fi
    "${bench_exec[@]}" "$starling" agent ${cfg[@]+"${cfg[@]}"} --name "n$i" --data-dir "$dir/data-n$i" \
      --gossip "$gossip" --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 --inbound 127.0.0.1:0 --join "127.0.0.1:$seed_port" \
      --event-log "$dir/n$i.events" --log-level warn >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
  done
}

# starling_counter <dir> <name>: sum of one membership counter over all agents (stats --json).
starling_counter() {
  local dir=$1 name=$2 i admin total=0 v
  for ((i = 0; i < n; i++)); do
    admin=$(sed -nE 's/.*"admin": *"([^"]+)".*/\1/p' "$dir/data-n$i/agent.json" 2>/dev/null)
    [[ -n $admin ]] || continue
    v=$(timeout 10 "${bench_exec[@]}" "$starling" stats --admin "$admin" --json 2>/dev/null |
      grep -oE "\"$name\": *[0-9]+" | head -n 1 | grep -oE '[0-9]+$') || true
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# lines_after <file> <line count at the start>: the lines appended since.
lines_after() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null || true; }

# The stopper: SIGSTOPs the given pids for stop_for seconds out of every stop_every, until
# killed (bounded by the window anyway: it is killed when the window ends).
run_stopper() {
  local end=$(($(date +%s) + duration + stop_every)) p
  while (($(date +%s) < end)); do
    sleep $((stop_every - stop_for))
    for p in "$@"; do kill -STOP "$p" 2>/dev/null || true; done
    sleep "$stop_for"
    for p in "$@"; do kill -CONT "$p" 2>/dev/null || true; done
  done
}

setup="loss ${loss}%"
[[ -n $stop ]] && setup+=", one member SIGSTOPped ${stop_for} s of every ${stop_every} s"
echo "# Membership under loss: Starling vs serf $(serf version | head -1) (profile lan), $(nproc) cores, $(date -u +%FT%TZ)"
echo "n = $n per system, $setup, ${duration} s after convergence, $runs runs; commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'); starling config: ${starling_config:-defaults}; work dir: $work"
check_loss
echo

results="$work/results.txt" # run system deaths members raised suspect_events refutations
: >"$results"

for ((run = 1; run <= runs; run++)); do
  rdir="$work/run$run"
  mkdir -p "$rdir"
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  declare -A sys_pids=()
  for sys in $systems; do
    agent_pids=()
    "start_$sys" "$rdir/$sys"
    sys_pids[$sys]="${agent_pids[*]}"
  done
  # Convergence of every system (no loss yet), polled with a deadline.
  for sys in $systems; do
    files=()
    for ((i = 0; i < n; i++)); do files+=("$rdir/$sys/n$i.joins"); done
    if [[ $sys == starling ]]; then refresh="split_events $rdir/starling $n"; else refresh=true; fi
    conv_check() { $refresh; converged_at "$n" "${files[@]}"; }
    wait_for "$deadline_s" conv_check >/dev/null || { echo "run $run: $sys did not converge in ${deadline_s} s" >&2; exit 1; }
  done
  # Line counts at the window's start: what was logged before is not counted.
  declare -A mark=()
  for sys in $systems; do
    for ((i = 0; i < n; i++)); do
      for f in "$rdir/$sys/n$i.log" "$rdir/$sys/n$i.events" "$rdir/$sys/n$i.failed"; do
        if [[ -f $f ]]; then mark[$f]=$(wc -l <"$f"); else mark[$f]=0; fi
      done
    done
  done
  [[ $systems == *starling* ]] && { st_raised0=$(starling_counter "$rdir/starling" suspicions); st_ref0=$(starling_counter "$rdir/starling" refutations); }
  loss_on
  stopped=()
  if [[ -n $stop ]]; then
    # The same member of each system: the last one (not a seed).
    for sys in $systems; do read -ra a <<<"${sys_pids[$sys]}"; stopped+=("${a[$((n - 1))]}"); done
    run_stopper "${stopped[@]}" &
    stopper=$!
  fi
  sleep "$duration"
  if [[ -n $stopper ]]; then
    kill "$stopper" 2>/dev/null || true; wait "$stopper" 2>/dev/null || true; stopper=""
    for p in "${stopped[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  fi
  [[ $systems == *starling* ]] && {
    st_raised1=$(starling_counter "$rdir/starling" suspicions)
    st_ref1=$(starling_counter "$rdir/starling" refutations)
  }
  loss_off
  # Stop this run's agents (the counts below are of what they logged until now).
  for sys in $systems; do
    read -ra a <<<"${sys_pids[$sys]}"
    for p in "${a[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait "${a[@]}" 2>/dev/null || true
  done
  pids=()
  load1=$(cut -d' ' -f1-3 /proc/loadavg)
  [[ $systems == *starling* ]] && split_events "$rdir/starling" "$n"
  echo "## Run $run of $runs ($setup, ${duration} s; load average $load0 at the start, $load1 at the end)"
  echo
  printf '| system | false deaths (events in all views) | members falsely dead | suspicions raised | suspect events (all views) | refutations |\n|---|---|---|---|---|---|\n'
  for sys in $systems; do
    d=$rdir/$sys
    deaths=0 raised=0 sevents=0 refs=0
    : >"$d/false-deaths.txt"
    for ((i = 0; i < n; i++)); do
      if [[ $sys == starling ]]; then
        lines_after "$d/n$i.events" "${mark[$d/n$i.events]}" >"$d/n$i.window"
        deaths=$((deaths + $(grep -c '"event": *"failed"' "$d/n$i.window" || true)))
        sevents=$((sevents + $(grep -c '"event": *"suspected"' "$d/n$i.window" || true)))
        sed -nE 's/.*"event": *"failed".*"member": *"([^"]+)".*/n'"$i"' \1/p' "$d/n$i.window" >>"$d/false-deaths.txt"
      else
        lines_after "$d/n$i.failed" "${mark[$d/n$i.failed]}" | awk -v o="n$i" '{ print o, $2 }' >>"$d/false-deaths.txt"
        lines_after "$d/n$i.log" "${mark[$d/n$i.log]}" >"$d/n$i.window"
        raised=$((raised + $(grep -c 'Suspect .* has failed, no acks received' "$d/n$i.window" || true)))
        refs=$((refs + $(grep -c 'Refuting a suspect message' "$d/n$i.window" || true)))
      fi
    done
    if [[ $sys == serf ]]; then
      deaths=$(wc -l <"$d/false-deaths.txt")
      sevents="-"
    else
      raised=$((st_raised1 - st_raised0))
      refs=$((st_ref1 - st_ref0))
    fi
    members=$(awk '{ print $2 }' "$d/false-deaths.txt" | sort -u | wc -l)
    printf '| %s | %d | %d | %d | %s | %d |\n' "$sys" "$deaths" "$members" "$raised" "$sevents" "$refs"
    echo "$run $sys $deaths $members $raised $sevents $refs" >>"$results"
    if ((deaths > 0)); then
      echo "  $sys false deaths (observer subject): $(tr '\n' ';' <"$d/false-deaths.txt")" >&2
    fi
  done
  echo
done

echo "## Summary over $runs runs ($setup, ${duration} s each, n = $n)"
echo
printf '| system | runs with a false death | false deaths median / max | members falsely dead median / max | suspicions raised median / max | suspect events median / max | refutations median / max |\n|---|---|---|---|---|---|---|\n'
for sys in $systems; do
  col() { awk -v s="$sys" -v c="$1" '$2 == s { print $c }' "$results"; }
  with=$(awk -v s="$sys" '$2 == s && $3 > 0' "$results" | wc -l)
  if [[ $sys == starling ]]; then se="$(col 6 | median) / $(col 6 | maximum)"; else se="-"; fi
  printf '| %s | %d of %d | %s / %s | %s / %s | %s / %s | %s | %s / %s |\n' "$sys" "$with" "$runs" \
    "$(col 3 | median)" "$(col 3 | maximum)" "$(col 4 | median)" "$(col 4 | maximum)" \
    "$(col 5 | median)" "$(col 5 | maximum)" "$se" "$(col 7 | median)" "$(col 7 | maximum)"
done
