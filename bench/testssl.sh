#!/usr/bin/env bash
# Runs Debian's testssl.sh against Starling's node TLS (identity/tls.hpp, served by
# starling-tls-bench with a fresh test mesh) and checks the verdict that matters: TLS 1.3
# only (or 1.2 with forward secrecy), AEAD ciphers with forward secrecy, no weak cipher
# category offered. Prints the protocol and cipher sections and exits 1 on a failed check.
#
# Expected and not failures: "chain of trust NOT ok" (a private mesh root testssl does not
# know), "certificate does not match supplied URI" (SPIFFE URIs, no DNS names), "expires
# < 30 days" (node certificates live 24 h by design), no CRL/OCSP (revocation is gossiped,
# docs/decisions/0004).
#
# Usage: bench/testssl.sh [--out FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bench_bin=${STARLING_TLS_BENCH:-$top/build/bin/starling-tls-bench}
out=""
[[ ${1:-} == --out ]] && out=$2
command -v testssl >/dev/null || { echo "testssl not installed (scripts/install-deps.sh --bench)" >&2; exit 1; }
[[ -x $bench_bin ]] || { echo "missing $bench_bin: run ./run build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/starling-testssl.XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$bench_bin" pki "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bench_bin" serve "$dir" "$port" >"$dir/serve.out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '^ready' "$dir/serve.out" && break; sleep 0.1; done

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
