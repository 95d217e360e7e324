#!/usr/bin/env bash
# What a stranger's failing TLS handshakes cost a node, with and without the per-address
# limit (dataplane_options::max_failed_handshakes_per_source; docs/security.md).
#
# Starts one agent with its own issuer certificate (so its data plane's inbound port takes
# mutual TLS only) on 127.0.0.1, then, for ROUNDS rounds, two floods of ATTEMPTS TLS 1.3
# connections without a client certificate, one at a time (a Python client):
#   - "spread": from 100 addresses in turn, 127.(R+1).0.1 to 127.(R+1).0.100 in round R
#     (fewer failures per address than the limit's burst: every connection gets a
#     handshake, as before the limit);
#   - "one address": all from 127.1.0.R in round R (the limit's burst, then closes at
#     accept).
# Reports the agent's CPU (utime + stime from /proc, 10 ms ticks) over each flood, and the
# proxy counters that say what happened (handshakes refused, connections refused at accept).
#
# Usage: bench/handshake_flood.sh [--rounds N] [--attempts N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
starling=${STARLING_BIN:-$top/build/bin/starling}
rounds=3 attempts=2000
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --attempts) attempts=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--attempts N]" >&2; exit 2 ;;
  esac
done
[[ -x $starling ]] || { echo "missing $starling: run ./run build first (or set STARLING_BIN)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not installed" >&2; exit 1; }

work=$(mktemp -d)
agent=
cleanup() {
  [[ -n $agent ]] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/flood.py" <<'EOF'
import socket, ssl, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefix, first, sources = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
handshakes = closed = 0
start = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=5,
                                 source_address=(prefix + str(first + i % sources), 0))
    try:
        t = ctx.wrap_socket(s, do_handshake_on_connect=False)
        t.do_handshake()  # the server's first flight came: it spent a handshake
        handshakes += 1
        try:
            t.recv(1)     # its refusal of the missing certificate
        except Exception:
            pass
    except Exception:
        closed += 1       # closed before any handshake
    finally:
        s.close()
print(f"{handshakes} handshakes, {closed} closed before one, {time.monotonic() - start:.2f} s")
EOF

"$starling" ca init --mesh flood.test --out "$work/ca" > /dev/null
"$starling" ca issuer --ca "$work/ca" --name n1 --out "$work/issuer" > /dev/null
"$starling" agent --name n1 --issuer "$work/issuer" --data-dir "$work/data" \
  --gossip 127.0.0.1:0 --admin 127.0.0.1:0 --dns off --metrics off --inbound 127.0.0.1:0 \
  > "$work/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 100); do grep -q " ready:" "$work/agent.log" && break; sleep 0.1; done
inbound=$(grep -o "inbound [0-9.]*:[0-9]*" "$work/agent.log" | head -1 | cut -d' ' -f2)
admin=$(grep -o "admin [0-9.]*:[0-9]*" "$work/agent.log" | head -1 | cut -d' ' -f2)
[[ -n $inbound && -n $admin ]] || { echo "the agent did not start:" >&2; cat "$work/agent.log" >&2; exit 1; }

cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$agent/stat"; }
counters() {
  "$starling" stats --admin "$admin" --json | python3 -c '
import json, sys
p = json.load(sys.stdin)["proxy"]
print(p["inbound_refused_tls"], p["inbound_refused_failing"])'
}

echo "agent inbound $inbound (mutual TLS), $attempts attempts per flood"
for round in $(seq 1 "$rounds"); do
  for spread in yes no; do
    read -r tls0 failing0 < <(counters)
    before=$(cpu_ms)
    if [[ $spread == yes ]]; then
      from=("127.$((round + 1)).0." 1 100) label="spread     "
    else
      from=(127.1.0. "$round" 1) label="one address"
    fi
    result=$(python3 "$work/flood.py" "${inbound%:*}" "${inbound#*:}" "$attempts" "${from[@]}")
    after=$(cpu_ms)
    read -r tls1 failing1 < <(counters)
    echo "round $round $label: agent CPU $((after - before)) ms; client: $result;" \
      "refused handshakes +$((tls1 - tls0)), closed at accept +$((failing1 - failing0))"
  done
done
