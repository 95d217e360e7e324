#!/usr/bin/env bash
# TLS handshakes per second: Starling's node TLS (identity/tls.hpp: TLS 1.3 only, mutual,
# both chains checked by verify_peer) against `openssl s_server` with the same certificates
# and the same rules (-tls1_3, -Verify 2: a client certificate is required), in one run on
# loopback. One client drives both: `openssl s_time -new` (a full handshake per connection,
# no resumption), so the ratio compares the server side. Rounds alternate the two servers;
# the median of connections per real second is reported, and the ratio Starling / OpenSSL
# (higher is better). Starling runs twice per round: with admission quorum 1, and with
# quorum 2 (the client's two endorsements verified at every handshake, decision 0009).
#
# Usage: bench/tls_vs_openssl.sh [--rounds 3] [--seconds 5] [--out DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bench_bin=${STARLING_TLS_BENCH:-$top/build/bin/starling-tls-bench}
rounds=3
seconds=5
out=""
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -x $bench_bin ]] || { echo "missing $bench_bin: run ./run build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/starling-tls-bench.XXXXXX)
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n $out ]] && mkdir -p "$out" && cp -r "$dir"/. "$out"/
  rm -rf "$dir"
}
trap cleanup EXIT

"$bench_bin" pki "$dir"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT: until something accepts, at most 5 s
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

# s_time_rate PORT: connections per real second of `openssl s_time -new` for $seconds.
# s_time prints whole real seconds only, so the wall time is measured here.
s_time_rate() {
  local line t0 t1
  t0=$(date +%s.%N)
  line=$(cd "$dir" && openssl s_time -connect "127.0.0.1:$1" -new -time "$seconds" \
          -cert client.crt -key client.key -CAfile root.crt 2>/dev/null |
         grep 'connections in .* real seconds')
  t1=$(date +%s.%N)
  # "<n> connections in <t> real seconds, ..."
  awk -v t0="$t0" -v t1="$t1" '{ printf "%.1f\n", $1 / (t1 - t0) }' <<<"$line"
}

run_starling() { # run_starling ROUND QUORUM
  local port pid rate
  port=$(free_port)
  "$bench_bin" serve "$dir" "$port" "$2" >"$dir/starling-$1.out" 2>&1 &
  pid=$!; servers+=("$pid")
  # Wait for its ready line (a probe connection would count as a refused handshake).
  for _ in $(seq 50); do grep -q '^ready' "$dir/starling-$1.out" && break; sleep 0.1; done
  rate=$(s_time_rate "$port")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  if ! grep -q 'refused 0$' "$dir/starling-$1.out"; then
    echo "starling refused handshakes: $(tail -1 "$dir/starling-$1.out")" >&2
    exit 1
  fi
  echo "$rate"
}

run_openssl() {
  local port pid rate
  port=$(free_port)
  (cd "$dir" && exec openssl s_server -accept "$port" -cert server.crt -key server.key \
     -cert_chain issuer.crt -CAfile root.crt -Verify 2 -tls1_3 -quiet) \
     >"$dir/openssl-$1.out" 2>&1 &
  pid=$!; servers+=("$pid")
  wait_port "$port"
  rate=$(s_time_rate "$port")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$rate"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

s_rates=(); q_rates=(); o_rates=()
for r in $(seq "$rounds"); do
  s_rates+=("$(run_starling "$r" 1)")
  q_rates+=("$(run_starling "$r-q2" 2)")
  o_rates+=("$(run_openssl "$r")")
  echo "round $r: starling ${s_rates[-1]}/s, starling quorum 2 ${q_rates[-1]}/s, openssl s_server ${o_rates[-1]}/s" >&2
done
s_med=$(printf '%s\n' "${s_rates[@]}" | median)
q_med=$(printf '%s\n' "${q_rates[@]}" | median)
o_med=$(printf '%s\n' "${o_rates[@]}" | median)
printf '| server | handshakes/s (median of %d x %ds) |\n|---|---|\n' "$rounds" "$seconds"
printf '| starling (identity/tls) | %s |\n| starling, admission quorum 2 | %s |\n| openssl s_server | %s |\n' \
  "$s_med" "$q_med" "$o_med"
awk -v s="$s_med" -v o="$o_med" 'BEGIN { printf "ratio starling / openssl: %.2fx\n", s / o }'
awk -v q="$q_med" -v o="$o_med" -v s="$s_med" \
  'BEGIN { printf "ratio starling quorum 2 / openssl: %.2fx (quorum 2 / quorum 1: %.2fx)\n", q / o, q / s }'
