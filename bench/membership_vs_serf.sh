#!/usr/bin/env bash
# Membership benchmark: Starling and Debian's serf (memberlist) side by side, in one run, on
# loopback. For each size n, several rounds alternate the two systems; medians are reported as
# ratios Starling / Serf (lower is better for times and RSS).
#
#   convergence  from the first agent's start until every agent has a join event for every
#                other agent (each system's own event stream: serf's event handler, Starling's
#                --event-log), as in shared/BENCH-NOTES.md
#   detection    from `kill -9` of one agent until the last survivor has a failed event for it
#   rss          mean resident set size per agent once converged (KiB)
#
# Usage: bench/membership_vs_serf.sh [--sizes "20 50"] [--rounds 3] [--serf-profile lan]
#                                    [--starling-config FILE] [--out DIR]
#                                    [--systems "serf starling"]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
sizes="20 50"
systems="serf starling"
rounds=3
serf_profile=lan
starling_config=""
out=""
starling=${STARLING_BIN:-$top/build/bin/starling}
deadline_s=120
# shellcheck source=bench/lib/membership.sh
source "$here/lib/membership.sh"

while (($#)); do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --serf-profile) serf_profile=$2; shift 2 ;;
    --starling-config) starling_config=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v serf >/dev/null || { echo "serf is not installed (scripts/install-deps.sh --bench)" >&2; exit 2; }
[[ $systems != *starling* || -x $starling ]] || { echo "starling binary not found at $starling (make build)" >&2; exit 2; }

# Agents' logs and event files go to --out (kept) or a temporary directory (removed).
bench_work_dir "$out"

# measure_round <system> <n> <dir> <start> <refresh command> <pid...>: waits until every
# agent saw every other join, records RSS, kills the last agent, waits until every survivor
# saw it fail, stops the rest; prints "convergence detection rss". <refresh> runs before
# each check (it turns event logs into the joins/failed files).
measure_round() {
  local sys=$1 n=$2 dir=$3 start=$4 refresh=$5; shift 5
  local agent_pids=("$@") files=() survivors=() i p
  local victim=$((n - 1))
  for ((i = 0; i < n; i++)); do files+=("$dir/n$i.joins"); done
  for ((i = 0; i < n - 1; i++)); do survivors+=("$dir/n$i.failed"); done
  conv_check() { $refresh; converged_at "$n" "${files[@]}"; }
  det_check() { $refresh; detected_at "n$victim" "${survivors[@]}"; }
  local t_conv t_kill t_det rss
  t_conv=$(wait_for $deadline_s conv_check) || { echo "$sys n=$n did not converge" >&2; return 1; }
  rss=$(mean_rss "${agent_pids[@]}")
  t_kill=$(now); kill -9 "${agent_pids[$victim]}"
  t_det=$(wait_for $deadline_s det_check) || { echo "$sys n=$n did not detect" >&2; return 1; }
  for p in "${agent_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait "${agent_pids[@]}" 2>/dev/null || true
  awk -v s="$start" -v c="$t_conv" -v k="$t_kill" -v d="$t_det" -v r="$rss" \
    'BEGIN { printf "%.3f %.3f %d\n", c - s, d - k, r }'
}

run_serf() { # run_serf n round -> "convergence detection rss"
  local n=$1 round=$2
  local dir="$work/serf-$n-$round"
  mkdir -p "$dir"
  write_serf_handler "$dir"
  local seed_port; free_port seed_port
  local agent_pids=() i port rpc start
  start=$(now)
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then port=$seed_port; else free_port port; fi
    free_port rpc
    serf agent -node "n$i" -bind "127.0.0.1:$port" -rpc-addr "127.0.0.1:$rpc" \
      -profile "$serf_profile" -retry-join "127.0.0.1:$seed_port" -retry-interval 1s \
      -event-handler "member-join,member-failed=$dir/handler.sh" -log-level warn \
      >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
  done
  measure_round serf "$n" "$dir" "$start" true "${agent_pids[@]}"
}

run_starling() { # run_starling n round -> "convergence detection rss"
  local n=$1 round=$2
  local dir="$work/starling-$n-$round"
  mkdir -p "$dir"
  local seed_port; free_port seed_port
  local agent_pids=() i gossip start cfg=()
  [[ -n $starling_config ]] && cfg=(--config "$starling_config")
  start=$(now)
  for ((i = 0; i < n; i++)); do
    if ((i == 0)); then gossip="127.0.0.1:$seed_port"; else gossip="127.0.0.1:0"; fi
    "$starling" agent "${cfg[@]}" --name "n$i" --data-dir "$dir/data-n$i" --gossip "$gossip" \
      --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 --inbound 127.0.0.1:0 --join "127.0.0.1:$seed_port" --event-log "$dir/n$i.events" \
      --log-level warn >"$dir/n$i.log" 2>&1 &
    agent_pids+=($!); pids+=($!)
  done
  measure_round starling "$n" "$dir" "$start" "split_events $dir $n" "${agent_pids[@]}"
}

echo "# Membership: Starling vs serf $(serf version | head -1) (profile $serf_profile), $(nproc) cores, $(date -u +%FT%TZ)"
echo "starling config: ${starling_config:-defaults}; rounds: $rounds; work dir: $work"
echo
printf '| n | system | convergence s (median) | detection s (median) | RSS KiB/agent |\n|---|---|---|---|---|\n'
for n in $sizes; do
  : >"$work/serf-$n.txt"; : >"$work/starling-$n.txt"
  for ((r = 1; r <= rounds; r++)); do
    for sys in $systems; do "run_$sys" "$n" "$r" >>"$work/$sys-$n.txt"; done
  done
  for sys in $systems; do
    c=$(awk '{ print $1 }' "$work/$sys-$n.txt" | median)
    d=$(awk '{ print $2 }' "$work/$sys-$n.txt" | median)
    m=$(awk '{ print $3 }' "$work/$sys-$n.txt" | median)
    printf '| %d | %s | %s | %s | %s |\n' "$n" "$sys" "$c" "$d" "$m"
    eval "${sys}_c=$c ${sys}_d=$d ${sys}_m=$m"
  done
  [[ $systems == *serf* && $systems == *starling* ]] || continue
  # shellcheck disable=SC2154
  awk -v n="$n" -v sc="$serf_c" -v sd="$serf_d" -v sm="$serf_m" \
      -v tc="$starling_c" -v td="$starling_d" -v tm="$starling_m" \
    'BEGIN { printf "| %d | **ratio starling/serf** | %.2fx | %.2fx | %.2fx |\n", n, tc / sc, td / sd, tm / sm }'
done
