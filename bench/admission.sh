#!/usr/bin/env bash
# Admissions per second through one seed, beside the TLS handshake rate of the same port.
#
# Starts a fresh mesh of real agents on 127.0.0.1: issuer-1 (`--issuer`, with a gossip key)
# and node-1 (admitted by token, no issuer: it forwards admission requests to issuer-1).
# Then, alternating for ROUNDS rounds:
#   - `openssl s_time -new` against issuer-1's gossip port for SECONDS (the anchor: full TLS
#     1.3 handshakes a second that OpenSSL's own client makes against that port, without a
#     client certificate, which is how a joiner connects);
#   - starling-admission-bench: COUNT admissions straight to issuer-1, then COUNT through
#     node-1 (forwarded over mutual TLS to issuer-1). Each admission is a whole
#     `starling agent --token` first start minus the agent: a P-256 key, a pinned-root TLS
#     handshake, a CSR, the token redeemed and its spend persisted (fsync) by the issuer, a
#     certificate signed, the grant (chain, bundle, keyring) checked by the joiner.
# Reports medians and the ratios admissions/s : handshakes/s.
#
# With --quorum 2 (docs/decisions/0009) a second issuer, issuer-2, joins; every agent runs
# with admission_quorum 2, and each admission carries a token of each issuer: the seed
# (issuer-1, or node-1) asks issuer-2 to endorse the joiner's key, then issuer-1 signs.
#
# Usage: bench/admission.sh [--rounds N] [--count N] [--seconds S] [--threads T] [--quorum 1|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
starling=${STARLING_BIN:-$top/build/bin/starling}
bench=${STARLING_ADMISSION_BENCH:-$top/build/bin/starling-admission-bench}
rounds=3 count=200 seconds=5 threads=1 quorum=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --quorum) quorum=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--count N] [--seconds S] [--threads T] [--quorum 1|2]" >&2; exit 2 ;;
  esac
done
[[ -x $starling && -x $bench ]] || { echo "missing binaries in build/bin: run ./run build first" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not installed" >&2; exit 1; }

dir=$(mktemp -d /tmp/starling-admission-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

start_agent() { # start_agent NAME ARGS... -> sets $gossip and $admin
  local name=$1; shift
  "$starling" agent --name "$name" --data-dir "$dir/data/$name" --gossip 127.0.0.1:0 \
    --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 --inbound 127.0.0.1:0 --log-level warn "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=($!)
  for _ in $(seq 150); do grep -q ' ready: gossip ' "$dir/$name.out" && break; sleep 0.1; done
  gossip=$(sed -n 's/.* ready: gossip \([0-9.:]*\), admin .*/\1/p' "$dir/$name.out")
  admin=$(sed -n 's/.* ready: gossip .*, admin \([0-9.:]*\).*/\1/p' "$dir/$name.out")
  [[ -n $gossip ]] || { echo "$name did not start:" >&2; cat "$dir/$name.err" >&2; exit 1; }
}
[[ $quorum == 1 || $quorum == 2 ]] || { echo "--quorum: 1 or 2" >&2; exit 2; }
token_on() { "$starling" token create --uses "$2" --ttl 1h --admin "$1" 2>/dev/null | tail -1; }
# token USES: what one admission presents (a token of each issuer under a quorum of 2).
token() {
  if [[ $quorum == 2 ]]; then
    echo "$(token_on "$issuer_admin" "$1"),$(token_on "$issuer2_admin" "$1")"
  else
    token_on "$issuer_admin" "$1"
  fi
}

"$starling" ca init --mesh bench.local --out "$dir/ca" >/dev/null
"$starling" ca issuer --ca "$dir/ca" --name issuer-1 --out "$dir/issuer" >/dev/null
key=$("$starling" keyring generate)
start_agent issuer-1 --issuer "$dir/issuer" --gossip-key "$key" --admission-quorum "$quorum"
issuer_gossip=$gossip issuer_admin=$admin
if [[ $quorum == 2 ]]; then
  "$starling" ca issuer --ca "$dir/ca" --name issuer-2 --out "$dir/issuer-2" >/dev/null
  start_agent issuer-2 --issuer "$dir/issuer-2" --gossip-key "$key" --admission-quorum 2 \
    --join "$issuer_gossip"
  issuer2_admin=$admin
fi
node1_tokens=()
IFS=, read -r -a parts <<<"$(token 1)"
for t in "${parts[@]}"; do node1_tokens+=(--token "$t"); done
start_agent node-1 --join "$issuer_gossip" --admission-quorum "$quorum" "${node1_tokens[@]}"
seed_gossip=$gossip

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
hs=() direct=() forwarded=()
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds, $count admissions, $threads client thread(s), admission quorum $quorum"
for r in $(seq "$rounds"); do
  # Handshakes: s_time prints "N connections in T real seconds"; count / T.
  line=$(openssl s_time -connect "$issuer_gossip" -new -time "$seconds" -tls1_3 2>/dev/null |
         grep -m1 'connections in .* real seconds' || true)
  n=$(awk '{print $1}' <<<"$line"); t=$(awk '{for (i=1;i<=NF;i++) if ($i=="in") print $(i+1)}' <<<"$line")
  h=$(awk -v n="${n:-0}" -v t="${t:-1}" 'BEGIN {printf "%.1f", n / t}')
  hs+=("$h")
  d=$("$bench" "$issuer_gossip" "$(token "$count")" "$count" "$threads" | tee -a "$dir/bench.log" | sed -n 's/.*admissions_per_s=\([0-9.]*\).*/\1/p')
  f=$("$bench" "$seed_gossip" "$(token "$count")" "$count" "$threads" | tee -a "$dir/bench.log" | sed -n 's/.*admissions_per_s=\([0-9.]*\).*/\1/p')
  direct+=("$d") forwarded+=("$f")
  echo "round $r: openssl s_time handshakes/s $h | admissions/s direct $d, through a forwarding seed $f"
done
mh=$(printf '%s\n' "${hs[@]}" | median)
md=$(printf '%s\n' "${direct[@]}" | median)
mf=$(printf '%s\n' "${forwarded[@]}" | median)
cat "$dir/bench.log"
echo "median: handshakes/s $mh; admissions/s direct $md ($(awk -v a="$md" -v b="$mh" 'BEGIN {printf "%.2f", a / b}')x handshakes), through a seed $mf ($(awk -v a="$mf" -v b="$mh" 'BEGIN {printf "%.2f", a / b}')x)"
