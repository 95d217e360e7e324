#!/usr/bin/env bash
# Runs Debian's testssl.sh against Starling's node TLS and checks the verdict that matters:
# TLS 1.3
# only (or 1.2 with forward secrecy), AEAD ciphers with forward secrecy, no weak cipher
# category offered. Prints the protocol and cipher sections and exits 1 on a failed check.
#
# Expected and not failures: "chain of trust NOT ok" (a private mesh root testssl does not
# know), "certificate does not match supplied URI" (SPIFFE URIs, no DNS names), "expires
# < 30 days" (node certificates live 24 h by design), no CRL/OCSP (revocation is gossiped,
# docs/decisions/0004).
#
# Targets (first argument):
#   agent (default)  a real `starling agent` started as the issuer of a fresh mesh: testssl
#                    probes its gossip TCP port (push-pull and admission share it; the server
#                    lets a client without a certificate finish the handshake, as a joiner
#                    does, and then serves it admission requests only)
#   server           starling-tls-bench serve: identity/tls.hpp alone, mutual TLS required
#
# Usage: bench/testssl.sh [agent|server] [--out FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bench_bin=${STARLING_TLS_BENCH:-$top/build/bin/starling-tls-bench}
starling=${STARLING_BIN:-$top/build/bin/starling}
target=agent
[[ ${1:-} == agent || ${1:-} == server ]] && { target=$1; shift; }
out=""
[[ ${1:-} == --out ]] && out=$2
command -v testssl >/dev/null || { echo "testssl not installed (scripts/install-deps.sh --bench)" >&2; exit 1; }
[[ -x $bench_bin && -x $starling ]] || { echo "missing binaries in build/bin: run ./run build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/starling-testssl.XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
if [[ $target == server ]]; then
  "$bench_bin" pki "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bench_bin" serve "$dir" "$port" >"$dir/serve.out" 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q '^ready' "$dir/serve.out" && break; sleep 0.1; done
else
  "$starling" ca init --mesh testssl.local --out "$dir/ca" >/dev/null
  "$starling" ca issuer --ca "$dir/ca" --name issuer-1 --out "$dir/issuer" >/dev/null
  "$starling" agent --name issuer-1 --data-dir "$dir/data" --issuer "$dir/issuer" \
    --gossip 127.0.0.1:0 --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 --inbound 127.0.0.1:0 >"$dir/agent.out" 2>"$dir/agent.err" &
  pid=$!
  for _ in $(seq 100); do grep -q ' ready: gossip ' "$dir/agent.out" && break; sleep 0.1; done
  port=$(sed -n 's/.* ready: gossip [0-9.]*:\([0-9]*\),.*/\1/p' "$dir/agent.out")
  [[ -n $port ]] || { echo "the agent did not start:" >&2; cat "$dir/agent.err" >&2; exit 1; }
  echo "testssl against starling agent issuer-1, gossip TCP port 127.0.0.1:$port"
fi

report=$dir/testssl.txt
testssl --quiet --color 0 --warnings off --ip one -p -s -f -S "127.0.0.1:$port" >"$report" 2>&1 || true
[[ -n $out ]] && cp "$report" "$out"
sed -n '/Testing protocols/,/Elliptic curves offered/p' "$report" | grep -v '^$'

fail=0
check() { # check DESCRIPTION REGEX: the regex must match a line of the report
  if grep -Eq "$2" "$report"; then echo "ok:   $1"; else echo "FAIL: $1"; fail=1; fi
}
check "TLS 1.3 offered" '^ TLS 1\.3 +offered'
for p in 'SSLv2' 'SSLv3' 'TLS 1 ' 'TLS 1\.1' 'TLS 1\.2'; do
  check "${p//\\/} not offered" "^ ${p} *not offered"
done
for c in 'NULL ciphers' 'Anonymous NULL' 'Export ciphers' 'LOW: 64 Bit' 'Triple DES' 'Obsolete CBC'; do
  check "$c not offered" "^ ${c}.*not offered"
done
check "forward secrecy offered" 'PFS is offered \(OK\)'
exit $fail
