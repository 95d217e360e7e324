#!/usr/bin/env bash
# Routing benchmark: how long one change takes to reach every agent of a loopback cluster,
# Starling's routing table against Serf's user events, side by side in one run.
#
#   serf      `serf event -coalesce=false bench-<round>` on n0; each agent's event handler appends the time it
#             ran to <dir>/<self>.user; the change reached everyone at the latest such time
#   starling  `starling resilience svc<round> --timeout 1s` on n0 (a policy write: signed
#             and merged by the routing table, spread by piggyback); each agent logs
#             "routing: new resilience of svc<round> by n0 applied" with its time
# Both clocks start just before the CLI command runs (so both include a CLI process start),
# over the n-1 agents other than n0, once the cluster has converged (every agent saw every
# other join). Several rounds per system, alternating; medians and the ratio Starling/Serf
# (lower is better). Starling runs without certificates (as the membership benchmark), so
# records are unsigned: the cost of signatures is not in these times (docs/routing.md).
#
# Usage: bench/routing_vs_serf.sh [--sizes "50"] [--rounds 3] [--serf-profile lan] [--out DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
sizes="50"
rounds=3
serf_profile=lan
out=""
starling=${STARLING_BIN:-$top/build/bin/starling}
deadline_s=120
# shellcheck source=bench/lib/membership.sh
source "$here/lib/membership.sh"

while (($#)); do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --serf-profile) serf_profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v serf >/dev/null || { echo "serf is not installed (scripts/install-deps.sh --bench)" >&2; exit 2; }
[[ -x $starling ]] || { echo "starling binary not found at $starling (./run build)" >&2; exit 2; }

bench_work_dir "$out"

# Latest first line of each file (one "<unix time> ..." per line); empty unless every file has one.
latest_first() {
  local f latest="" t
  for f in "$@"; do
    t=$(awk 'NR == 1 { print $1; exit }' "$f" 2>/dev/null)
    [[ -n $t ]] || { echo ""; return; }
    if [[ -z $latest ]] || awk -v a="$t" -v b="$latest" 'BEGIN { exit !(a > b) }'; then latest=$t; fi
  done
  echo "$latest"
}

write_serf_user_handler() { # serf's handler: joins as bench/lib does, user events to .user
  cat >"$1/handler.sh" <<'H'
#!/bin/sh
dir=$(dirname "$0")
case "$SERF_EVENT" in
  member-join) while read -r name rest; do echo "$(date +%s.%N) $name" >> "$dir/$SERF_SELF_NAME.joins"; done ;;
  user) echo "$(date +%s.%N) $SERF_USER_EVENT" >> "$dir/$SERF_SELF_NAME.user" ;;
esac
H
  chmod +x "$1/handler.sh"
}

run_serf() { # run_serf n round -> seconds
  local n=$1 round=$2
  local dir="$work/serf-$n-$round"
  mkdir -p "$dir"
  write_serf_user_handler "$dir"
  local seed_port; free_port seed_port
  local agent_pids=() joins=() users=() i port rpc rpc0=""
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then port=$seed_port; else free_port port; fi
    free_port rpc
    ((i == 0)) && rpc0=$rpc
    serf agent -node "n$i" -bind "127.0.0.1:$port" -rpc-addr "127.0.0.1:$rpc" \
      -profile "$serf_profile" -retry-join "127.0.0.1:$seed_port" -retry-interval 1s \
      -event-handler "$dir/handler.sh" -log-level warn >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
    joins+=("$dir/n$i.joins")
    ((i > 0)) && users+=("$dir/n$i.user")
  done
  conv() { converged_at "$n" "${joins[@]}"; }
  wait_for $deadline_s conv >/dev/null || { echo "serf n=$n did not converge" >&2; return 1; }
  sleep 2 # let the join news drain, as for Starling
  local t0 done_at
  t0=$(now)
  # Not coalesced: serf would otherwise hold the event back to merge repeats of its name.
  serf event -coalesce=false -rpc-addr "127.0.0.1:$rpc0" "bench-$round" >/dev/null
  reached() { latest_first "${users[@]}"; }
  done_at=$(wait_for $deadline_s reached) || { echo "serf n=$n: the event did not reach everyone" >&2; return 1; }
  for p in "${agent_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait "${agent_pids[@]}" 2>/dev/null || true
  awk -v a="$t0" -v b="$done_at" 'BEGIN { printf "%.3f\n", b - a }'
}

# "<unix time> applied" lines of a Starling agent's log for the policy of round `round`.
starling_applied() { # starling_applied <log> <round>
  local line
  line=$(grep -m1 "routing: new resilience of svc$2 by n0 applied" "$1" 2>/dev/null) || return 0
  date -d "${line%% *}" +%s.%N
}

run_starling() { # run_starling n round -> seconds
  local n=$1 round=$2
  local dir="$work/starling-$n-$round"
  mkdir -p "$dir"
  local seed_port; free_port seed_port
  local agent_pids=() joins=() i gossip admin0=""
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then gossip="127.0.0.1:$seed_port"; else gossip="127.0.0.1:0"; fi
    "$starling" agent --name "n$i" --data-dir "$dir/data-n$i" --gossip "$gossip" \
      --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 --inbound 127.0.0.1:0 --join "127.0.0.1:$seed_port" --event-log "$dir/n$i.events" \
      --log-level info >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
    joins+=("$dir/n$i.joins")
  done
  conv() { split_events "$dir" "$n"; converged_at "$n" "${joins[@]}"; }
  wait_for $deadline_s conv >/dev/null || { echo "starling n=$n did not converge" >&2; return 1; }
  sleep 2
  admin0=$(sed -n 's/.* ready: gossip .*, admin \([0-9.:]*\).*/\1/p' "$dir/n0.log" | head -1)
  local t0 done_at
  t0=$(now)
  "$starling" resilience "svc$round" --timeout 1s --admin "$admin0" >/dev/null
  reached() {
    local i t latest=""
    for ((i = 1; i < n; i++)); do
      t=$(starling_applied "$dir/n$i.log" "$round")
      [[ -n $t ]] || { echo ""; return; }
      if [[ -z $latest ]] || awk -v a="$t" -v b="$latest" 'BEGIN { exit !(a > b) }'; then latest=$t; fi
    done
    echo "$latest"
  }
  done_at=$(wait_for $deadline_s reached) || { echo "starling n=$n: the policy did not reach everyone" >&2; return 1; }
  for p in "${agent_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait "${agent_pids[@]}" 2>/dev/null || true
  awk -v a="$t0" -v b="$done_at" 'BEGIN { printf "%.3f\n", b - a }'
}

echo "# Routing: one change to every agent, Starling vs serf $(serf version | head -1) (profile $serf_profile), $(nproc) cores, $(date -u +%FT%TZ)"
echo "rounds: $rounds; work dir: $work"
echo
printf '| n | system | seconds to the last agent (median) | each round |\n|---|---|---|---|\n'
for n in $sizes; do
  : >"$work/serf-$n.txt"; : >"$work/starling-$n.txt"
  for ((r = 1; r <= rounds; r++)); do
    for sys in serf starling; do "run_$sys" "$n" "$r" >>"$work/$sys-$n.txt"; done
  done
  for sys in serf starling; do
    m=$(median <"$work/$sys-$n.txt")
    printf '| %d | %s | %s | %s |\n' "$n" "$sys" "$m" "$(tr '\n' ' ' <"$work/$sys-$n.txt")"
    eval "${sys}_m=$m"
  done
  # shellcheck disable=SC2154
  awk -v n="$n" -v s="$serf_m" -v t="$starling_m" \
    'BEGIN { printf "| %d | **ratio starling/serf** | %.2fx | |\n", n, t / s }'
done
