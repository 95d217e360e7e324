#!/usr/bin/env bash
# Data-plane benchmark (issue 17): Starling's proxy against HAProxy on the same mesh-shaped
# path, side by side in one run on loopback, with nginx direct as the floor.
#
#   direct    wrk -> nginx
#   haproxy   wrk -> haproxy A (http) == TLS 1.3, client certificates (ECDSA P-256, verify
#             required, verifyhost) ==> haproxy B -> nginx; nbthread 1 each, http-reuse always
#   starling  wrk -> node A's outbound listener == mTLS 1.3 (node certificates from a mesh
#             root and an issuer, admitted by token) ==> node B's inbound -> nginx;
#             [proxy] threads = 1 per agent
#
# Measured, several rounds alternating the systems (the order rotates each round), medians:
# 1. closed loop: wrk -t1 -c32, keep-alive, `return 200 "ok"`: requests/s, p50, p99;
# 2. open loop at a fixed rate (starling-paced-client: latency from each request's scheduled
#    time, so no coordinated omission): p50/p99, and what two hops add over direct;
# 3. L4 bulk: one TCP stream for N seconds through a `--protocol tcp` service / HAProxy
#    `mode tcp` with the same mTLS between hops / direct (starling-bulk source and sink): MB/s;
#    then one hop to a local instance (plain TCP on both sides, the path splice(2) serves);
# 4. each agent's RSS idle (mesh up, services registered) and under the wrk load (sampled
#    VmRSS peak and VmHWM), HAProxy's beside it;
# 5. kTLS: what this kernel and OpenSSL support (starling-ktls-probe);
# 6. L4 connections: wrk with `Connection: close` through each system's TCP path to nginx
#    (a new connection, and between the hops a new TLS session, per request);
# 7. HTTP/2 clients, gRPC's shape (decision 0025): h2load -c4 -m32 (4 connections of 32
#    streams each, prior knowledge) through each system to nginx speaking HTTP/2 (h2c):
#    Starling's outbound listener of a `--protocol http2` service, HAProxy's `proto h2`
#    bind and server lines with HTTP/2 between its hops; requests/s, p50 and p99 (from
#    h2load's per-request log), CPU per request and hop. Skipped without h2load
#    (nghttp2-client).
# Before measuring, it checks that Starling's hop is TLS 1.3 with client certificates (the
# agents' data plane says "mutual TLS"; B's inbound speaks TLS 1.3 and refuses a handshake
# without a certificate and plain text, counted in inbound_refused_tls; a request shows two
# `via: 1.1 starling`, one per hop, and moves A's upstream and B's inbound counters).
# The machine is shared: the load average is printed at start and at end.
#
# Usage: bench/proxy_vs_haproxy.sh [--rounds 3] [--duration 8] [--connections 32]
#          [--rate 1000] [--paced-seconds 10] [--bulk-seconds 5] [--conn-seconds 5]
#          [--profile] [--syscalls] [--browser-headers]
#          [--mallocs] [--splice] [--io epoll|io_uring] [--haproxy-hop h1|h2] [--starling-hop h1|h2]
#          [--nice N] [--out DIR]
# --browser-headers makes wrk's keep-alive requests (the closed loop, its warm-up, and the
# profile, system call and malloc runs) carry a browser's header fields (14 besides Host:
# User-Agent, Accept, Cookie, Connection: keep-alive, ...) instead of Host alone: per-field
# costs then weigh as they do on most real traffic. The header says which ran.
# --out keeps every raw output (wrk, paced client, bulk, agents' logs, configs) in DIR.
# --profile adds, after the measurements, a `perf record` of each system's two hops
# (Starling's agents, HAProxy's processes; cpu-clock, call graphs) during one more wrk run,
# one more bulk run, one more run of new connections (L4) and one more h2load run through
# it, and prints each
# hop's libraries and hottest symbols (perf.data files kept with --out).
# --syscalls adds `strace -c -f` of each proxy (HAProxy A and B, Starling A and B) during one
# more wrk run and one more paced run through each system, and prints system calls per
# request by name (strace slows the traced process; the counts stay exact, the rates do not
# matter here).
# --mallocs adds libc malloc calls per request of each proxy (HAProxy A and B, Starling A
# and B) during one more wrk run and one more h2load run (with h2load) through each system:
# a uprobe on the libc the proxies load (`perf probe`, root; removed at exit), counted per
# process with `perf stat`. With --out, one call in 8 of each Starling node is also
# recorded with its call stack (DWARF) for `perf report -i DIR/mallocs-wrk-starling-a.data`
# (and -b; `mallocs-h2-...` for the h2load run).
# --splice runs both proxies' one-hop TCP path with splice(2) (Starling `[proxy] splice =
# true`; HAProxy `option splice-auto`); by default neither splices (both proxies' default).
# --io B runs Starling's data plane on back end B (`[proxy] io`, docs/operations.md):
# io_uring (the default, as the agent's) or epoll. The header says which ran (the agents'
# log line); where io_uring is denied the agents fall back to epoll and the run stops.
# --haproxy-hop h2 makes HAProxy speak HTTP/2 between its two hops (ALPN h2 on A's server
# line and B's bind; `http-reuse always` then multiplexes every client's requests over one
# connection). The default, h1, is HTTP/1.1 between the
# hops (one request at a time per connection). The header says which ran; the TCP (bulk)
# path is the same either way.
# --starling-hop h1 makes Starling speak HTTP/1.1 between its hops (`[proxy]
# http2_between_nodes = false`); the default, h2, is HTTP/2 (decision 0022): the report's
# pool line then shows node A opening a handful of connections (HTTP/2 to B, the bulk
# runs' TCP tunnels) for every request of the run.
# --nice N runs the whole benchmark (every process it starts inherits it) at nice N, e.g. -5
# (root only) on a shared machine, so that other users' jobs disturb it less; all systems get
# the same priority, so the comparison stays fair. Printed in the header.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
rounds=3
duration=8
connections=32
rate=1000
paced_seconds=10
bulk_seconds=5
conn_seconds=5
profile=0
browser_headers=0
syscalls=0
mallocs=0
malloc_event=""
splice=0
io=io_uring
starling_hop=h2
haproxy_hop=h1
nice_level=""
out=""
bin=${STARLING_BIN_DIR:-$top/build/bin}
starling=$bin/starling
deadline_s=30
# shellcheck source=bench/lib/membership.sh
source "$here/lib/membership.sh"

while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --paced-seconds) paced_seconds=$2; shift 2 ;;
    --bulk-seconds) bulk_seconds=$2; shift 2 ;;
    --conn-seconds) conn_seconds=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --browser-headers) browser_headers=1; shift ;;
    --syscalls) syscalls=1; shift ;;
    --mallocs) mallocs=1; shift ;;
    --splice) splice=1; shift ;;
    --io) io=$2; shift 2 ;;
    --haproxy-hop) haproxy_hop=$2; shift 2 ;;
    --starling-hop) starling_hop=$2; shift 2 ;;
    --nice) nice_level=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo pipefail/{/^set /d;p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

[[ $io == epoll || $io == io_uring ]] || { echo "--io: epoll or io_uring, not '$io'" >&2; exit 2; }
[[ $haproxy_hop == h1 || $haproxy_hop == h2 ]] || { echo "--haproxy-hop: h1 or h2, not '$haproxy_hop'" >&2; exit 2; }
[[ $starling_hop == h1 || $starling_hop == h2 ]] || { echo "--starling-hop: h1 or h2, not '$starling_hop'" >&2; exit 2; }
for tool in haproxy nginx wrk openssl curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (scripts/install-deps.sh --bench)" >&2; exit 2; }
done
for b in starling starling-paced-client starling-bulk starling-ktls-probe; do
  [[ -x $bin/$b ]] || { echo "$bin/$b not found: cmake --build build --target starling $b" >&2; exit 2; }
done

# wrk's extra header fields for the keep-alive HTTP runs (--browser-headers).
wrk_headers=()
if ((browser_headers)); then
  for h in "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0" \
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" \
    "Accept-Language: en-US,en;q=0.5" "Accept-Encoding: gzip, deflate, br" \
    "Connection: keep-alive" "Cookie: session=abc123; theme=dark" \
    "Upgrade-Insecure-Requests: 1" "Sec-Fetch-Dest: document" "Sec-Fetch-Mode: navigate" \
    "Sec-Fetch-Site: none" "Sec-Fetch-User: ?1" "Pragma: no-cache" "Cache-Control: no-cache" \
    "Referer: http://www.example.com/start"; do
    wrk_headers+=(-H "$h")
  done
fi

if [[ -n $nice_level ]]; then
  renice -n "$nice_level" -p $$ >/dev/null || { echo "renice -n $nice_level failed (negative values need root)" >&2; exit 2; }
fi
bench_work_dir "$out"
# Our own cleanup instead of bench/lib's kill -9: nginx's master must stop its worker, so
# everything gets SIGTERM first, then SIGKILL after a bounded wait.
cleanup() {
  local p end
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  end=$(($(date +%s) + 5))
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && (($(date +%s) < end)); do sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ -z $malloc_event ]] || perf probe -q -d "$malloc_event" >/dev/null 2>&1 || true
  ((keep)) || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "==> $*" >&2; }
die() { echo "proxy_vs_haproxy: $*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# wait_file_line <seconds> <file> <regex>: polls until the file has a line matching regex.
wait_file_line() {
  local end=$(($(date +%s) + $1))
  while (($(date +%s) < end)); do
    grep -qE "$3" "$2" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# wait_port <seconds> <port>: polls until something listens on 127.0.0.1:port.
wait_port() {
  local end=$(($(date +%s) + $1))
  while (($(date +%s) < end)); do
    ss -Htln "( sport = :$2 )" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# What the RSS is made of: "anon/file" KiB (RssAnon: heap, stacks; RssFile: the mapped
# pages of the binary and its shared libraries, shared with every process that maps them).
anon_file() { awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { printf "%.1f / %.1f", a / 1024, f / 1024 }' "/proc/$1/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU time (user + system, clock ticks) a process used so far; cpu_per <ticks> <count> <unit>
# -> microseconds of CPU per `count`/`unit` (e.g. per request, per MB).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The kernel's part of it (system time, clock ticks).
sys_ticks() { awk '{ print $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
clk_tck=$(getconf CLK_TCK)
# Context switches of every thread of a process so far: "voluntary involuntary" (a thread
# that blocks, e.g. in epoll, switches voluntarily; one preempted, e.g. by the task its
# send woke, involuntarily).
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^voluntary_ctxt_switches:/ { v += $2 } /^nonvoluntary_ctxt_switches:/ { n += $2 } END { print v + 0, n + 0 }'
}
# The whole machine's CPU time so far, clock ticks: "busy idle softirq" (/proc/stat's first
# line; busy: user, nice, system, irq, softirq, steal; idle: idle, iowait; softirq: the
# part of busy in software interrupts, which the kernel charges to no process: on loopback,
# most of TCP's receive side).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6, $8; exit }' /proc/stat; }
# children_ticks <file>: the CPU ticks (user + system) of this shell's waited-for children
# that `times >file`, run in this shell (not in a subshell, whose children are others),
# wrote.
children_ticks() {
  awk -v hz="$clk_tck" 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%.0f\n", t * hz }' "$1"
}
cpu_us_per() { awk -v t="$1" -v n="$2" -v hz="$clk_tck" 'BEGIN { if (n > 0) printf "%.2f\n", t / hz * 1e6 / n; else print 0 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- JSON views of the agent, read without jq (not among the packages the benches need) ---
# The proxy group of `starling stats --json` is one flat object: proxy_stat <admin> <key>.
proxy_stat() {
  "$starling" stats --json --admin "$1" | sed -n 's/.*"proxy":{\([^}]*\)}.*/\1/p' |
    tr ',' '\n' | sed -n "s/^\"$2\":\\([0-9]*\\)$/\\1/p"
}
# The outbound listener of a service in `starling routes --json` (flat route objects: no
# policy is set in this benchmark).
outbound_of() {
  "$starling" routes --json --admin "$1" 2>/dev/null | tr '{' '\n' |
    grep "\"service\":\"$2\"" | sed -n 's/.*"outbound":"\([^"]*\)".*/\1/p'
}
# Non-empty when `service` has a healthy instance on node `node` in `starling services --json`.
healthy_on() {
  "$starling" services --json --admin "$1" 2>/dev/null | tr '{' '\n' |
    grep "\"node\":\"$3\"" | grep '"healthy":true' | grep -q "\"id\":\"$2\"" && echo yes || true
}

# --- wrk output: requests/s, p50 and p99 in ms, errors ---
to_ms() { # "124.00us" | "2.75ms" | "1.02s" -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n;
    else if (v ~ /s$/) n *= 1000; printf "%.3f\n", n }'
}
wrk_field() { # wrk_field <file> rps|p50|p99|errors
  case "$2" in
    rps) awk '/^Requests\/sec:/ { print $2 }' "$1" ;;
    p50) to_ms "$(awk '$1 == "50%" { print $2 }' "$1")" ;;
    p99) to_ms "$(awk '$1 == "99%" { print $2 }' "$1")" ;;
    errors) awk '/Non-2xx or 3xx responses:/ { e += $NF } /Socket errors:/ {
        for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i } END { print e + 0 }' "$1" ;;
  esac
}
kv() { sed -n "s/.*\\b$2=\\([0-9.]*\\).*/\\1/p" "$1"; } # key=value of a helper's output line

echo "# Data plane: Starling vs HAProxy 2-hop mTLS, $(nproc) cores (shared machine), $(date -u +%FT%TZ)"
haproxy -v 2>&1 | sed -n 1p
nginx -v 2>&1
wrk -v 2>&1 | sed -n 1p || true # wrk -v exits 1
echo "openssl: $(openssl version); kernel $(uname -r)"
# The binaries run (their build's revision), not this script's checkout: an A/B run of two
# trees names each.
echo "starling: $("$bin/starling" --version 2>/dev/null || echo "unknown ($bin/starling)"), from $bin"
echo "load average at start: $(loadavg); nice $(ps -o ni= -p $$ | tr -d ' ')"
echo "HAProxy between its hops: $([[ $haproxy_hop == h2 ]] && echo "HTTP/2 (ALPN h2, --haproxy-hop h2)" || echo "HTTP/1.1 (--haproxy-hop h1)"); Starling between its hops: $([[ $starling_hop == h2 ]] && echo "HTTP/2 (ALPN h2)" || echo "HTTP/1.1 (--starling-hop h1)")"
echo "rounds: $rounds; wrk -t1 -c$connections -d${duration}s --latency$( ((browser_headers)) && echo ", a browser's header fields (--browser-headers: $((${#wrk_headers[@]} / 2)) besides Host)"); paced: $rate req/s for ${paced_seconds}s; bulk: ${bulk_seconds}s; work dir: $work"
echo

# ------------------------------------------------------------------ nginx and the bulk sink
free_port nginx_port
free_port nginx_h2_port # HTTP/2 with prior knowledge (h2c), for the HTTP/2 clients (7.)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "ok"; }
  }
  server {
    listen 127.0.0.1:$nginx_h2_port http2;
    location / { return 200 "ok"; }
  }
}
EOF
log "nginx on 127.0.0.1:$nginx_port"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" \
  -g "daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;" \
  >"$work/nginx/stdout.log" 2>&1 &
pids+=($!)
wait_port $deadline_s "$nginx_port" || die "nginx did not listen on $nginx_port (see $work/nginx)"
nginx_worker_pid() { pgrep -P "$(cat "$work/nginx/nginx.pid" 2>/dev/null || echo 0)" | head -1; }
wait_for $deadline_s nginx_worker_pid >/dev/null || die "nginx started no worker (see $work/nginx)"
nginx_worker=$(nginx_worker_pid)

"$bin/starling-bulk" sink --listen 127.0.0.1:0 >"$work/sink.out" 2>&1 &
pids+=($!)
wait_file_line $deadline_s "$work/sink.out" '^listening ' || die "the bulk sink did not start"
sink_port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$work/sink.out")

# ------------------------------------------------------------------ HAProxy A -> B
log "HAProxy: a CA and two ECDSA P-256 certificates (openssl), A and B with nbthread 1"
hp=$work/haproxy
mkdir -p "$hp"
(
  cd "$hp"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=bench haproxy CA" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  for n in a b; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$n.key"
    openssl req -new -key "$n.key" -subj "/CN=haproxy-$n" -out "$n.csr"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:haproxy-%s\n' "$n" >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
      -extfile "$n.ext" -out "$n.crt"
    cat "$n.crt" "$n.key" >"$n.pem"
  done
) >"$hp/openssl.log" 2>&1 || die "openssl failed (see $hp/openssl.log)"
free_port hp_a_http; free_port hp_b_http; free_port hp_a_tcp; free_port hp_b_tcp; free_port hp_a_tcp1
free_port hp_a_tcpweb; free_port hp_b_tcpweb
free_port hp_a_h2; free_port hp_b_h2
hp_splice=$( ((splice)) && echo "option splice-auto" || echo "# no splice (without --splice)")
hp_common="global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s"
to_b="ssl verify required ca-file $hp/ca.crt crt $hp/a.pem verifyhost haproxy-b sni str(haproxy-b)"
from_a="ssl crt $hp/b.pem ca-file $hp/ca.crt verify required"
# The HTTP hop between A and B: HTTP/1.1, or HTTP/2 negotiated by ALPN (--haproxy-hop h2).
to_b_http=$to_b; from_a_http=$from_a
if [[ $haproxy_hop == h2 ]]; then to_b_http+=" alpn h2"; from_a_http+=" alpn h2"; fi
cat >"$hp/a.cfg" <<EOF
$hp_common
frontend http_in
  mode http
  bind 127.0.0.1:$hp_a_http
  default_backend to_b
backend to_b
  mode http
  http-reuse always
  server b 127.0.0.1:$hp_b_http $to_b_http
listen tcp_in
  mode tcp
  bind 127.0.0.1:$hp_a_tcp
  server b 127.0.0.1:$hp_b_tcp $to_b
listen tcp_local
  mode tcp
  $hp_splice
  bind 127.0.0.1:$hp_a_tcp1
  server sink 127.0.0.1:$sink_port
listen tcpweb_in
  mode tcp
  bind 127.0.0.1:$hp_a_tcpweb
  server b 127.0.0.1:$hp_b_tcpweb $to_b
frontend h2_in
  mode http
  bind 127.0.0.1:$hp_a_h2 proto h2
  default_backend to_b_h2
backend to_b_h2
  mode http
  http-reuse always
  server b 127.0.0.1:$hp_b_h2 $to_b alpn h2
EOF
cat >"$hp/b.cfg" <<EOF
$hp_common
frontend http_in
  mode http
  bind 127.0.0.1:$hp_b_http $from_a_http
  default_backend app
backend app
  mode http
  http-reuse always
  server nginx 127.0.0.1:$nginx_port
listen tcp_in
  mode tcp
  bind 127.0.0.1:$hp_b_tcp $from_a
  server sink 127.0.0.1:$sink_port
listen tcpweb_in
  mode tcp
  bind 127.0.0.1:$hp_b_tcpweb $from_a
  server nginx 127.0.0.1:$nginx_port
frontend h2_in
  mode http
  bind 127.0.0.1:$hp_b_h2 $from_a alpn h2
  default_backend app_h2
backend app_h2
  mode http
  http-reuse always
  server nginx 127.0.0.1:$nginx_h2_port proto h2
EOF
for n in b a; do
  haproxy -c -f "$hp/$n.cfg" >"$hp/$n.check" 2>&1 || die "haproxy $n: bad config (see $hp/$n.check)"
  haproxy -db -f "$hp/$n.cfg" >"$hp/$n.log" 2>&1 &
  pids+=($!)
  printf -v "hp_${n}_pid" '%s' "$!"
done
wait_port $deadline_s "$hp_a_http" && wait_port $deadline_s "$hp_a_tcp" && wait_port $deadline_s "$hp_a_tcp1" &&
  wait_port $deadline_s "$hp_b_http" && wait_port $deadline_s "$hp_b_tcp" ||
  die "haproxy did not listen (see $hp/*.log)"

# ------------------------------------------------------------------ Starling A -> B
log "Starling: a mesh root, an issuer for node A, node B admitted by token; [proxy] threads = 1"
st=$work/starling
mkdir -p "$st"
"$starling" ca init --mesh bench.local --out "$st/ca" >"$st/ca.log" 2>&1 &&
  "$starling" ca issuer --ca "$st/ca" --name na --out "$st/issuer-a" >>"$st/ca.log" 2>&1 ||
  die "starling ca failed (see $st/ca.log)"
cat >"$st/agent.toml" <<EOF
[proxy]
inbound = "127.0.0.1:0"
threads = 1
splice = $( ((splice)) && echo true || echo false)
io = "$io"
http2_between_nodes = $([[ $starling_hop == h2 ]] && echo true || echo false)
EOF
gossip_key=$("$starling" keyring generate | tail -1)
start_agent() { # start_agent <name> <extra flags...>; sets <name>_pid and <name>_admin
  local name=$1; shift
  "$starling" agent --config "$st/agent.toml" --name "$name" --data-dir "$st/$name" \
    --gossip 127.0.0.1:0 --admin 127.0.0.1:0 --dns 127.0.0.1:0 --metrics 127.0.0.1:0 "$@" \
    >"$st/$name.out" 2>"$st/$name.log" &
  pids+=($!)
  printf -v "${name}_pid" '%s' "$!"
  wait_file_line $deadline_s "$st/$name.out" ' ready: ' || die "agent $name did not start (see $st/$name.log)"
  printf -v "${name}_admin" '%s' "$(sed -n 's/.* ready: .*admin \([0-9.:]*\).*/\1/p' "$st/$name.out")"
}
start_agent na --issuer "$st/issuer-a" --gossip-key "$gossip_key"
na_gossip=$(sed -n 's/.* ready: gossip \([0-9.:]*\).*/\1/p' "$st/na.out")
token=$("$starling" token create --uses 1 --ttl 10m --admin "$na_admin" 2>"$st/token.log" | tail -1)
start_agent nb --join "$na_gossip" --token "$token"
nb_inbound=$(sed -n 's/.*inbound \([0-9.:]*\).*/\1/p' "$st/nb.out")
# shellcheck disable=SC2154
"$starling" register --name web --port "$nginx_port" --protocol http --check http --check-path / \
  --check-interval 1s --check-timeout 500ms --rise 1 --admin "$nb_admin" >"$st/register.log" 2>&1 &&
  "$starling" register --name bulk --port "$sink_port" --protocol tcp --check tcp \
    --check-interval 1s --check-timeout 500ms --rise 1 --admin "$nb_admin" >>"$st/register.log" 2>&1 &&
  "$starling" register --name bulk1 --port "$sink_port" --protocol tcp --check tcp \
    --check-interval 1s --check-timeout 500ms --rise 1 --admin "$na_admin" >>"$st/register.log" 2>&1 &&
  "$starling" register --name webtcp --port "$nginx_port" --protocol tcp --check tcp \
    --check-interval 1s --check-timeout 500ms --rise 1 --admin "$nb_admin" >>"$st/register.log" 2>&1 &&
  "$starling" register --name webh2 --port "$nginx_h2_port" --protocol http2 --check tcp \
    --check-interval 1s --check-timeout 500ms --rise 1 --admin "$nb_admin" >>"$st/register.log" 2>&1 ||
  die "starling register failed (see $st/register.log)"
web_ready() { [[ -n $(healthy_on "$na_admin" web nb) && -n $(outbound_of "$na_admin" web) ]] && echo yes || true; }
bulk_ready() { [[ -n $(healthy_on "$na_admin" bulk nb) && -n $(outbound_of "$na_admin" bulk) ]] && echo yes || true; }
wait_for $deadline_s web_ready >/dev/null || die "node A never saw web healthy on nb with an outbound listener"
wait_for $deadline_s bulk_ready >/dev/null || die "node A never saw bulk healthy on nb with an outbound listener"
bulk1_ready() { [[ -n $(healthy_on "$na_admin" bulk1 na) && -n $(outbound_of "$na_admin" bulk1) ]] && echo yes || true; }
wait_for $deadline_s bulk1_ready >/dev/null || die "node A never saw its own bulk1 healthy with an outbound listener"
st_web=$(outbound_of "$na_admin" web)
st_bulk=$(outbound_of "$na_admin" bulk)
st_bulk1=$(outbound_of "$na_admin" bulk1)
webtcp_ready() { [[ -n $(healthy_on "$na_admin" webtcp nb) && -n $(outbound_of "$na_admin" webtcp) ]] && echo yes || true; }
wait_for $deadline_s webtcp_ready >/dev/null || die "node A never saw webtcp healthy on nb with an outbound listener"
st_webtcp=$(outbound_of "$na_admin" webtcp)
webh2_ready() { [[ -n $(healthy_on "$na_admin" webh2 nb) && -n $(outbound_of "$na_admin" webh2) ]] && echo yes || true; }
wait_for $deadline_s webh2_ready >/dev/null || die "node A never saw webh2 healthy on nb with an outbound listener"
st_webh2=$(outbound_of "$na_admin" webh2)
log "Starling: web at $st_web, bulk at $st_bulk (node A's outbound listeners); nb inbound $nb_inbound"

# ------------------------------------------------------------------ is every hop what it claims?
log "checking that each 2-hop path is TLS 1.3 with client certificates"
for n in na nb; do
  grep -q "data plane: inbound .*(mutual TLS), 1 I/O thread(s) on $io" "$st/$n.log" ||
    die "agent $n's data plane is not mutual TLS with 1 thread on $io (see $st/$n.log; --io epoll where io_uring is denied)"
done
log "Starling's data plane runs on $io (--io)"
refused0=$(proxy_stat "$nb_admin" inbound_refused_tls)
tls_line=$(openssl s_client -connect "$nb_inbound" -brief </dev/null 2>&1 | grep -m1 'Protocol version') || true
[[ $tls_line == *TLSv1.3* ]] || die "node B's inbound did not speak TLS 1.3 to openssl s_client: '$tls_line'"
( # plain text where a TLS ClientHello is due: no answer, the connection closes
  exec 3<>"/dev/tcp/${nb_inbound%:*}/${nb_inbound##*:}"
  printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&3
  timeout 3 cat <&3
) >"$work/plain_probe.out" 2>/dev/null || true
[[ ! -s $work/plain_probe.out ]] || die "node B's inbound answered plain text: $(head -c 200 "$work/plain_probe.out")"
refused_ok() { (($(proxy_stat "$nb_admin" inbound_refused_tls) >= refused0 + 2)) && echo yes || true; }
wait_for 5 refused_ok >/dev/null ||
  die "node B's inbound did not count the certificate-less handshake and the plain-text probe as refused TLS"
conn_a0=$(proxy_stat "$na_admin" upstream_connects); in_b0=$(proxy_stat "$nb_admin" inbound_connections)
vias=$(curl -s -D - -o /dev/null --max-time 5 "http://$st_web/" | grep -ci '^via: 1.1 starling' || true)
[[ $vias == 2 ]] || die "a request through $st_web did not pass two Starling hops (via lines: $vias)"
moved_ok() { # the first request ever: A opens an upstream connection, B accepts it inbound
  (($(proxy_stat "$na_admin" upstream_connects) > conn_a0 &&
    $(proxy_stat "$nb_admin" inbound_connections) > in_b0)) && echo yes || true
}
wait_for 5 moved_ok >/dev/null || die "the request did not go from A's upstream to B's inbound listener"
hp_line=$(openssl s_client -connect "127.0.0.1:$hp_b_http" -brief </dev/null 2>&1 | grep -m1 'Protocol version') || true
[[ $hp_line == *TLSv1.3* ]] || die "haproxy B did not speak TLS 1.3: '$hp_line'"
hp_alpn=$(openssl s_client -connect "127.0.0.1:$hp_b_http" -alpn h2,http/1.1 </dev/null 2>&1 | grep -m1 -i 'ALPN') || true
if [[ $haproxy_hop == h2 ]]; then
  [[ $hp_alpn == *"protocol: h2"* ]] || die "haproxy B did not negotiate h2 (--haproxy-hop h2): '$hp_alpn'"
else
  [[ $hp_alpn != *"protocol: h2"* ]] || die "haproxy B negotiated h2 without --haproxy-hop h2: '$hp_alpn'"
fi
[[ $(curl -s --max-time 5 "http://127.0.0.1:$hp_a_http/") == ok ]] || die "no 'ok' through haproxy A -> B -> nginx"
[[ $(curl -s --max-time 5 "http://127.0.0.1:$nginx_port/") == ok ]] || die "no 'ok' from nginx"
echo "TLS between hops: Starling B inbound $tls_line (no client cert and plain text both refused: inbound_refused_tls +$(($(proxy_stat "$nb_admin" inbound_refused_tls) - refused0))); a request carries $vias via lines; HAProxy B $hp_line, $hp_alpn"

# RSS once the mesh is up, the services registered and one request served, before the load.
sleep 2 # not a readiness wait: lets the agents settle (gossip, checks) before the idle reading
idle_na=$(rss_kib "$na_pid"); idle_nb=$(rss_kib "$nb_pid")
idle_ha=$(rss_kib "$hp_a_pid"); idle_hb=$(rss_kib "$hp_b_pid")
declare -A idle_split
for p in "$na_pid" "$nb_pid" "$hp_a_pid" "$hp_b_pid"; do idle_split[$p]=$(anon_file "$p"); done

# sample_rss <file> <pid...>: in the background, the peak VmRSS of each pid every 100 ms into
# <file> as "pid peak_kib" lines, until killed (sets sampler_pid).
sample_rss() {
  local f=$1; shift
  (
    declare -A peak
    trap 'for p in "${!peak[@]}"; do echo "$p ${peak[$p]}"; done >"$f"; exit 0' TERM
    while :; do
      for p in "$@"; do
        r=$(rss_kib "$p")
        ((r > ${peak[$p]:-0})) && peak[$p]=$r
      done
      sleep 0.1
    done
  ) &
  sampler_pid=$!
  pids+=("$sampler_pid")
}
stop_sampler() { kill -TERM "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; }
peak_of() { awk -v p="$2" '$1 == p { print $2 }' "$1" 2>/dev/null; }

target_http() { case $1 in direct) echo "127.0.0.1:$nginx_port" ;; haproxy) echo "127.0.0.1:$hp_a_http" ;; starling) echo "$st_web" ;; esac; }
target_tcp() { case $1 in direct) echo "127.0.0.1:$sink_port" ;; haproxy) echo "127.0.0.1:$hp_a_tcp" ;; starling) echo "$st_bulk" ;; esac; }
target_tcpweb() { case $1 in direct) echo "127.0.0.1:$nginx_port" ;; haproxy) echo "127.0.0.1:$hp_a_tcpweb" ;; starling) echo "$st_webtcp" ;; esac; }
target_h2() { case $1 in direct) echo "127.0.0.1:$nginx_h2_port" ;; haproxy) echo "127.0.0.1:$hp_a_h2" ;; starling) echo "$st_webh2" ;; esac; }
target_tcp1() { case $1 in direct) echo "127.0.0.1:$sink_port" ;; haproxy) echo "127.0.0.1:$hp_a_tcp1" ;; starling) echo "$st_bulk1" ;; esac; }
hop_pids() { case $1 in direct) echo "" ;; haproxy) echo "$hp_a_pid $hp_b_pid" ;; starling) echo "$na_pid $nb_pid" ;; esac; }
# measure_cpu <file> <system> <command...>: runs the command and writes the CPU ticks its
# system's two proxies (hop A, hop B) used meanwhile to <file> as "ticks_a ticks_b", and
# the kernel's part of them to <file>.sys the same way.
measure_cpu() {
  local f=$1 sys=$2; shift 2
  local hops a0=0 b0=0 a1=0 b1=0 sa0=0 sb0=0 sa1=0 sb1=0 rc=0 x0=(0 0 0 0) x1=(0 0 0 0)
  read -r -a hops <<<"$(hop_pids "$sys")"
  if ((${#hops[@]} == 2)); then
    a0=$(cpu_ticks "${hops[0]}"); b0=$(cpu_ticks "${hops[1]}")
    sa0=$(sys_ticks "${hops[0]}"); sb0=$(sys_ticks "${hops[1]}")
    read -r -a x0 <<<"$(ctx_switches "${hops[0]}") $(ctx_switches "${hops[1]}")"
  fi
  local m0 m1 n0 n1
  read -r -a m0 <<<"$(machine_ticks)"; n0=$(cpu_ticks "$nginx_worker"); times >"$f.times0"
  "$@" || rc=$?
  times >"$f.times1"; read -r -a m1 <<<"$(machine_ticks)"; n1=$(cpu_ticks "$nginx_worker")
  # Where the machine's CPU went meanwhile: "busy idle nginx client softirq" (the client:
  # the command itself, e.g. wrk).
  echo "$((m1[0] - m0[0])) $((m1[1] - m0[1])) $((n1 - n0)) $(($(children_ticks "$f.times1") - $(children_ticks "$f.times0"))) $((m1[2] - m0[2]))" >"$f.machine"
  if ((${#hops[@]} == 2)); then
    a1=$(cpu_ticks "${hops[0]}"); b1=$(cpu_ticks "${hops[1]}")
    sa1=$(sys_ticks "${hops[0]}"); sb1=$(sys_ticks "${hops[1]}")
    read -r -a x1 <<<"$(ctx_switches "${hops[0]}") $(ctx_switches "${hops[1]}")"
  fi
  echo "$((a1 - a0)) $((b1 - b0))" >"$f"
  echo "$((sa1 - sa0)) $((sb1 - sb0))" >"$f.sys"
  # Context switches meanwhile, "voluntary_a involuntary_a voluntary_b involuntary_b".
  echo "$((x1[0] - x0[0])) $((x1[1] - x0[1])) $((x1[2] - x0[2])) $((x1[3] - x0[3]))" >"$f.ctx"
  return $rc
}
wrk_requests() { awk '/ requests in / { print $1 }' "$1"; }
systems=(direct haproxy starling)
order() { local r=$1 i; for ((i = 0; i < 3; i++)); do echo "${systems[$(((r + i) % 3))]}"; done; }

# ------------------------------------------------------------------ 1. wrk, closed loop
log "warm-up: 2 s of wrk per system (discarded)"
for sys in "${systems[@]}"; do
  wrk -t1 -c"$connections" -d2s "${wrk_headers[@]}" "http://$(target_http "$sys")/" >"$work/warmup-$sys.wrk" 2>&1
done
peak_na=0; peak_nb=0; peak_ha=0; peak_hb=0
for ((r = 1; r <= rounds; r++)); do
  for sys in $(order "$r"); do
    log "wrk round $r: $sys"
    sample_rss "$work/rss-$sys-$r" "$na_pid" "$nb_pid" "$hp_a_pid" "$hp_b_pid"
    measure_cpu "$work/cpu-wrk-$sys-$r" "$sys" wrk -t1 -c"$connections" -d"${duration}s" --latency \
      "${wrk_headers[@]}" "http://$(target_http "$sys")/" >"$work/wrk-$sys-$r.txt" 2>&1
    stop_sampler
    if [[ $sys == starling ]]; then
      peak_na=$(maximum <<<"$peak_na"$'\n'"$(peak_of "$work/rss-$sys-$r" "$na_pid")")
      peak_nb=$(maximum <<<"$peak_nb"$'\n'"$(peak_of "$work/rss-$sys-$r" "$nb_pid")")
    elif [[ $sys == haproxy ]]; then
      peak_ha=$(maximum <<<"$peak_ha"$'\n'"$(peak_of "$work/rss-$sys-$r" "$hp_a_pid")")
      peak_hb=$(maximum <<<"$peak_hb"$'\n'"$(peak_of "$work/rss-$sys-$r" "$hp_b_pid")")
    fi
    [[ -n $(wrk_field "$work/wrk-$sys-$r.txt" rps) ]] || die "wrk against $sys failed (see $work/wrk-$sys-$r.txt)"
  done
done
hwm_na=$(hwm_kib "$na_pid"); hwm_nb=$(hwm_kib "$nb_pid")

declare -A rps p50 p99 errs
echo "## Closed loop: wrk -t1 -c$connections, ${duration}s, keep-alive, medians of $rounds rounds"
echo
printf '| system | requests/s | p50 ms | p99 ms | errors | CPU µs/request hop A, hop B | requests/s each round |\n|---|---|---|---|---|---|---|\n'
declare -A cpu_req
for sys in "${systems[@]}"; do
  each=""; e=0
  for ((r = 1; r <= rounds; r++)); do
    f=$work/wrk-$sys-$r.txt
    each+="$(wrk_field "$f" rps) "
    e=$((e + $(wrk_field "$f" errors)))
  done
  rps[$sys]=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/wrk-$sys-$r.txt" rps; done | median)
  p50[$sys]=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/wrk-$sys-$r.txt" p50; done | median)
  p99[$sys]=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/wrk-$sys-$r.txt" p99; done | median)
  errs[$sys]=$e
  cpu_req[$sys]="–"
  if [[ $sys != direct ]]; then
    ca=$(for ((r = 1; r <= rounds; r++)); do read -r ta _ <"$work/cpu-wrk-$sys-$r"; cpu_us_per "$ta" "$(wrk_requests "$work/wrk-$sys-$r.txt")"; done | median)
    cb=$(for ((r = 1; r <= rounds; r++)); do read -r _ tb <"$work/cpu-wrk-$sys-$r"; cpu_us_per "$tb" "$(wrk_requests "$work/wrk-$sys-$r.txt")"; done | median)
    cpu_req[$sys]="$ca, $cb"
  fi
  printf '| %s | %.0f | %.3f | %.3f | %d | %s | %s|\n' "$sys" "${rps[$sys]}" "${p50[$sys]}" "${p99[$sys]}" "$e" "${cpu_req[$sys]}" "$each"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rps_ratio=$(ratio "${rps[starling]}" "${rps[haproxy]}")
p50_ratio=$(ratio "${p50[starling]}" "${p50[haproxy]}")
p99_ratio=$(ratio "${p99[starling]}" "${p99[haproxy]}")
printf '| **starling / haproxy** | **%sx** | %sx | %sx | | | |\n' "$rps_ratio" "$p50_ratio" "$p99_ratio"
echo
# Context switches per request and hop (medians of the rounds): how often a proxy blocked
# (voluntary) and how often a task its sends woke took its CPU (involuntary).
echo "Context switches per request (all threads of each proxy; medians of the rounds):"
echo
printf '| system | hop A voluntary, involuntary | hop B voluntary, involuntary |\n|---|---|---|\n'
for sys in haproxy starling; do
  cols=()
  for i in 0 1 2 3; do
    cols+=("$(for ((r = 1; r <= rounds; r++)); do
      read -r -a x <"$work/cpu-wrk-$sys-$r.ctx"
      awk -v c="${x[$i]}" -v n="$(wrk_requests "$work/wrk-$sys-$r.txt")" 'BEGIN { if (n > 0) printf "%.3f\n", c / n; else print 0 }'
    done | median)")
  done
  printf '| %s | %s, %s | %s, %s |\n' "$sys" "${cols[0]}" "${cols[1]}" "${cols[2]}" "${cols[3]}"
done
echo
# The CPU per request split into user space and the kernel (utime and stime of
# /proc/PID/stat, clock ticks; medians of the rounds): what a proxy's own code costs, and
# what its system calls and the TCP stack cost for it.
echo "CPU µs/request split, user space + kernel (medians of the rounds):"
echo
printf '| system | hop A | hop B |\n|---|---|---|\n'
for sys in haproxy starling; do
  cols=()
  for hop in 1 2; do
    u=$(for ((r = 1; r <= rounds; r++)); do
      cpu_us_per "$(($(cut -d' ' -f"$hop" "$work/cpu-wrk-$sys-$r") - $(cut -d' ' -f"$hop" "$work/cpu-wrk-$sys-$r.sys")))" "$(wrk_requests "$work/wrk-$sys-$r.txt")"
    done | median)
    k=$(for ((r = 1; r <= rounds; r++)); do
      cpu_us_per "$(cut -d' ' -f"$hop" "$work/cpu-wrk-$sys-$r.sys")" "$(wrk_requests "$work/wrk-$sys-$r.txt")"
    done | median)
    cols+=("$u + $k")
  done
  printf '| %s | %s | %s |\n' "$sys" "${cols[0]}" "${cols[1]}"
done
echo

# Where the machine's CPU went per request during the rounds: the client (wrk), nginx's
# worker, the two hops, the rest of the busy time (the kernel's work charged to none of them,
# e.g. softirqs in interrupts, and every other process), and the idle time. With four busy
# processes on the machine's CPUs, requests/s follows the sum of the busy columns; the rest
# is what neither proxy controls directly.
echo "Where the machine's CPU went, µs per request (/proc/stat and each process; medians of the rounds):"
echo
printf '| system | wrk | nginx | hop A | hop B | rest of busy | of it softirq | idle | busy total |\n|---|---|---|---|---|---|---|---|---|\n'
for sys in "${systems[@]}"; do
  cols=()
  for col in client nginx a b rest softirq idle total; do
    cols+=("$(for ((r = 1; r <= rounds; r++)); do
      read -r busy idle ng cl si <"$work/cpu-wrk-$sys-$r.machine"
      read -r ta tb <"$work/cpu-wrk-$sys-$r"
      case $col in
        client) t=$cl ;; nginx) t=$ng ;; a) t=$ta ;; b) t=$tb ;;
        rest) t=$((busy - cl - ng - ta - tb)) ;; softirq) t=$si ;; idle) t=$idle ;; total) t=$busy ;;
      esac
      cpu_us_per "$t" "$(wrk_requests "$work/wrk-$sys-$r.txt")"
    done | median)")
  done
  printf '| %s | %s |\n' "$sys" "$(IFS='|'; echo "${cols[*]}" | sed 's/|/ | /g')"
done
echo

# ------------------------------------------------------------------ 2. paced, open loop
declare -A pp50 pp99 pp999
for ((r = 1; r <= rounds; r++)); do
  for sys in $(order "$r"); do
    log "paced round $r: $sys at $rate req/s"
    measure_cpu "$work/cpu-paced-$sys-$r" "$sys" "$bin/starling-paced-client" --target "$(target_http "$sys")" --rate "$rate" \
      --seconds "$paced_seconds" --warmup-seconds 1 --connections 16 >"$work/paced-$sys-$r.txt" 2>&1 ||
      die "paced client against $sys failed: $(cat "$work/paced-$sys-$r.txt")"
  done
done
echo "## Open loop at $rate requests/s (starling-paced-client, 16 keep-alive connections, ${paced_seconds}s after 1 s warm-up, latency from the scheduled time), medians of $rounds rounds"
echo
printf '| system | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | p99 µs of the best round, added | CPU µs/request hop A, hop B | p99 µs each round |\n|---|---|---|---|---|---|---|---|---|\n'
declare -A pbest pcpu
# Requests each paced run sent, its warm-up second included (the CPU is measured over both).
paced_sent() { awk -v n="$(kv "$1" requests)" -v r="$rate" 'BEGIN { print n + r }'; }
for sys in "${systems[@]}"; do
  pcpu[$sys]="–"
  if [[ $sys != direct ]]; then
    ca=$(for ((r = 1; r <= rounds; r++)); do read -r ta _ <"$work/cpu-paced-$sys-$r"; cpu_us_per "$ta" "$(paced_sent "$work/paced-$sys-$r.txt")"; done | median)
    cb=$(for ((r = 1; r <= rounds; r++)); do read -r _ tb <"$work/cpu-paced-$sys-$r"; cpu_us_per "$tb" "$(paced_sent "$work/paced-$sys-$r.txt")"; done | median)
    pcpu[$sys]="$ca, $cb"
  fi
  pbest[$sys]=$(for ((r = 1; r <= rounds; r++)); do kv "$work/paced-$sys-$r.txt" p99_us; done | sort -g | sed -n 1p)
  pp50[$sys]=$(for ((r = 1; r <= rounds; r++)); do kv "$work/paced-$sys-$r.txt" p50_us; done | median)
  pp99[$sys]=$(for ((r = 1; r <= rounds; r++)); do kv "$work/paced-$sys-$r.txt" p99_us; done | median)
  pp999[$sys]=$(for ((r = 1; r <= rounds; r++)); do kv "$work/paced-$sys-$r.txt" p999_us; done | median)
done
for sys in "${systems[@]}"; do
  if [[ $sys == direct ]]; then added50="–"; added99="–"; else
    added50=$(awk -v a="${pp50[$sys]}" -v b="${pp50[direct]}" 'BEGIN { printf "%.0f", a - b }')
    added99=$(awk -v a="${pp99[$sys]}" -v b="${pp99[direct]}" 'BEGIN { printf "%.0f", a - b }')
  fi
  best="$(printf '%.0f' "${pbest[$sys]}")"
  [[ $sys == direct ]] || best+=", $(awk -v a="${pbest[$sys]}" -v b="${pbest[direct]}" 'BEGIN { printf "%.0f", a - b }')"
  printf '| %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s|\n' "$sys" "${pp50[$sys]}" "${pp99[$sys]}" "${pp999[$sys]}" "$added50" "$added99" "$best" "${pcpu[$sys]}" \
    "$(for ((r = 1; r <= rounds; r++)); do printf '%.0f ' "$(kv "$work/paced-$sys-$r.txt" p99_us)"; done)"
done
added99_st=$(awk -v a="${pp99[starling]}" -v b="${pp99[direct]}" 'BEGIN { printf "%.0f", a - b }')
echo

# ------------------------------------------------------------------ 3. L4 bulk
# bulk_table <tag> <target function> <hops> <title>: `rounds` streams through each system to
# the address `<target function> <system>` names, raw output in $work/<tag>-<system>-<round>.txt;
# prints the table (CPU per MB for each of the proxy's `hops` processes) and leaves the
# median MB/s of each system in bulk_mbps.
declare -A bulk_mbps
bulk_table() {
  local tag=$1 target=$2 hops=$3 title=$4 sys r hop cpu_mb mb
  for ((r = 1; r <= rounds; r++)); do
    for sys in $(order "$r"); do
      log "$tag round $r: $sys"
      measure_cpu "$work/cpu-$tag-$sys-$r" "$sys" "$bin/starling-bulk" source \
        --connect "$("$target" "$sys")" --seconds "$bulk_seconds" >"$work/$tag-$sys-$r.txt" 2>&1 || die "$tag through $sys failed: $(cat "$work/$tag-$sys-$r.txt")"
    done
  done
  echo "## $title, medians of $rounds rounds"
  echo
  if ((hops == 2)); then
    printf '| system | MB/s | CPU µs/MB hop A, hop B | each round |\n|---|---|---|---|\n'
  else
    printf '| system | MB/s | CPU µs/MB | each round |\n|---|---|---|---|\n'
  fi
  for sys in "${systems[@]}"; do
    bulk_mbps[$sys]=$(for ((r = 1; r <= rounds; r++)); do kv "$work/$tag-$sys-$r.txt" mb_per_s; done | median)
    cpu_mb="–"
    if [[ $sys != direct ]]; then
      cpu_mb=""
      for ((hop = 1; hop <= hops; hop++)); do
        # measure_cpu's file holds one CPU figure per hop process: field $hop is this one.
        mb=$(for ((r = 1; r <= rounds; r++)); do cpu_us_per "$(cut -d' ' -f"$hop" "$work/cpu-$tag-$sys-$r")" "$(awk -v b="$(kv "$work/$tag-$sys-$r.txt" bytes)" 'BEGIN { print b / 1e6 }')"; done | median)
        cpu_mb+="${cpu_mb:+, }$mb"
      done
    fi
    printf '| %s | %.0f | %s | %s|\n' "$sys" "${bulk_mbps[$sys]}" "$cpu_mb" "$(for ((r = 1; r <= rounds; r++)); do printf '%s ' "$(kv "$work/$tag-$sys-$r.txt" mb_per_s)"; done)"
  done
}

bulk_table bulk target_tcp 2 "L4 bulk: one TCP stream for ${bulk_seconds}s (starling-bulk; MB = 10^6 bytes)"
declare -A mbps
for sys in "${systems[@]}"; do mbps[$sys]=${bulk_mbps[$sys]}; done
bulk_ratio=$(ratio "${mbps[starling]}" "${mbps[haproxy]}")
printf '| **starling / haproxy** | **%sx** | | |\n' "$bulk_ratio"
echo

# ------------------------------------------------------------------ 3b. L4 bulk, one hop, plain
# A TCP service whose instance is on node A itself: both of A's sockets are plain, the path
# splice(2) serves (with --splice: Starling's [proxy] splice and HAProxy's option splice-auto).
bulk_table bulk1 target_tcp1 1 "L4 bulk, one hop to a local instance, plain TCP on both sides: one stream for ${bulk_seconds}s, $( ((splice)) && echo "both proxies splice (--splice)" || echo "no splice")"
printf '| **starling / haproxy** | **%sx** | | |\n' "$(ratio "${bulk_mbps[starling]}" "${bulk_mbps[haproxy]}")"
echo

# ------------------------------------------------------------------ 3c. L4 connections
# A new TCP connection per request through each system's TCP path to nginx (wrk sends
# `Connection: close`, so nginx closes after each answer and wrk connects again): each
# connection crosses the hops as a TCP tunnel, between them a TLS session of its own.
# HAProxy's server line keeps its last TLS session to B and resumes it (its default; no
# `no-ssl-reuse`); Starling does a full handshake with certificates for every tunnel.
for ((r = 1; r <= rounds; r++)); do
  for sys in $(order "$r"); do
    log "L4 connections round $r: $sys"
    measure_cpu "$work/cpu-conn-$sys-$r" "$sys" wrk -t1 -c"$connections" -d"${conn_seconds}s" --latency -H "Connection: close" \
      "http://$(target_tcpweb "$sys")/" >"$work/conn-$sys-$r.txt" 2>&1
    [[ -n $(wrk_field "$work/conn-$sys-$r.txt" rps) ]] || die "wrk with new connections against $sys failed (see $work/conn-$sys-$r.txt)"
  done
done
echo "## L4 connections: wrk -t1 -c$connections, ${conn_seconds}s, \`Connection: close\` through the TCP path (a new connection per request), medians of $rounds rounds"
echo
printf '| system | connections/s | p50 ms | p99 ms | errors | CPU µs/connection hop A, hop B | each round |\n|---|---|---|---|---|---|---|\n'
declare -A crps
for sys in "${systems[@]}"; do
  crps[$sys]=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/conn-$sys-$r.txt" rps; done | median)
  c50=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/conn-$sys-$r.txt" p50; done | median)
  c99=$(for ((r = 1; r <= rounds; r++)); do wrk_field "$work/conn-$sys-$r.txt" p99; done | median)
  e=0; for ((r = 1; r <= rounds; r++)); do e=$((e + $(wrk_field "$work/conn-$sys-$r.txt" errors))); done
  cc="–"
  if [[ $sys != direct ]]; then
    ca=$(for ((r = 1; r <= rounds; r++)); do read -r ta _ <"$work/cpu-conn-$sys-$r"; cpu_us_per "$ta" "$(wrk_requests "$work/conn-$sys-$r.txt")"; done | median)
    cb=$(for ((r = 1; r <= rounds; r++)); do read -r _ tb <"$work/cpu-conn-$sys-$r"; cpu_us_per "$tb" "$(wrk_requests "$work/conn-$sys-$r.txt")"; done | median)
    cc="$ca, $cb"
  fi
  printf '| %s | %.0f | %.3f | %.3f | %d | %s | %s|\n' "$sys" "${crps[$sys]}" "$c50" "$c99" "$e" "$cc" \
    "$(for ((r = 1; r <= rounds; r++)); do printf '%s ' "$(wrk_field "$work/conn-$sys-$r.txt" rps)"; done)"
done
printf '| **starling / haproxy** | **%sx** | | | | | |\n' "$(ratio "${crps[starling]}" "${crps[haproxy]}")"
echo

# ------------------------------------------------------------------ 3d. HTTP/2 clients
# gRPC's shape (decision 0025): few connections, many streams each, prior knowledge; every
# stream a request balanced on its own. HAProxy takes h2c on its bind (`proto h2`), speaks
# HTTP/2 to B whatever --haproxy-hop says (its best configuration for HTTP/2 clients) and
# h2c to nginx; Starling's service is `--protocol http2`, so B speaks HTTP/2 to nginx too.
if command -v h2load >/dev/null; then
  # h2_field <file> rps|requests|failed: from h2load's summary.
  h2_field() {
    case $2 in
      rps) sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$1" ;;
      requests) sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p' "$1" ;;
      failed) awk '/^requests:/ { n += $10 + $12 + $14 } /^status codes:/ { n += $7 + $9 } END { print n + 0 }' "$1" ;;
    esac
  }
  # h2_pct <log> <q>: the q-quantile of the per-request times (µs, the log's third column), ms.
  h2_pct() { cut -f3 "$1" | sort -n | awk -v q="$2" '{ v[NR] = $1 } END { i = int(q * NR); if (i < 1) i = 1; printf "%.3f\n", v[i] / 1000 }'; }
  for sys in "${systems[@]}"; do # warm-up, discarded
    h2load -D 2 -c 4 -m 32 -t 1 "http://$(target_h2 "$sys")/" >"$work/warmup-h2-$sys.txt" 2>&1 || true
  done
  for ((r = 1; r <= rounds; r++)); do
    for sys in $(order "$r"); do
      log "HTTP/2 clients round $r: $sys"
      measure_cpu "$work/cpu-h2-$sys-$r" "$sys" h2load -D "$duration" -c 4 -m 32 -t 1 \
        --log-file="$work/h2-$sys-$r.log" "http://$(target_h2 "$sys")/" >"$work/h2-$sys-$r.txt" 2>&1 ||
        die "h2load against $sys failed (see $work/h2-$sys-$r.txt)"
      [[ -n $(h2_field "$work/h2-$sys-$r.txt" rps) ]] || die "h2load against $sys printed no rate (see $work/h2-$sys-$r.txt)"
    done
  done
  echo "## HTTP/2 clients: h2load -c4 -m32 (prior knowledge), ${duration}s, to nginx over h2c, medians of $rounds rounds"
  echo
  printf '| system | requests/s | p50 ms | p99 ms | failed | CPU µs/request hop A, hop B | requests/s each round |
|---|---|---|---|---|---|---|
'
  declare -A hrps hp99
  for sys in "${systems[@]}"; do
    hrps[$sys]=$(for ((r = 1; r <= rounds; r++)); do h2_field "$work/h2-$sys-$r.txt" rps; done | median)
    h50=$(for ((r = 1; r <= rounds; r++)); do h2_pct "$work/h2-$sys-$r.log" 0.5; done | median)
    hp99[$sys]=$(for ((r = 1; r <= rounds; r++)); do h2_pct "$work/h2-$sys-$r.log" 0.99; done | median)
    e=0; for ((r = 1; r <= rounds; r++)); do e=$((e + $(h2_field "$work/h2-$sys-$r.txt" failed))); done
    hc="–"
    if [[ $sys != direct ]]; then
      ca=$(for ((r = 1; r <= rounds; r++)); do read -r ta _ <"$work/cpu-h2-$sys-$r"; cpu_us_per "$ta" "$(h2_field "$work/h2-$sys-$r.txt" requests)"; done | median)
      cb=$(for ((r = 1; r <= rounds; r++)); do read -r _ tb <"$work/cpu-h2-$sys-$r"; cpu_us_per "$tb" "$(h2_field "$work/h2-$sys-$r.txt" requests)"; done | median)
      hc="$ca, $cb"
    fi
    printf '| %s | %.0f | %.3f | %.3f | %d | %s | %s|\n' "$sys" "${hrps[$sys]}" "$h50" "${hp99[$sys]}" "$e" "$hc" \
      "$(for ((r = 1; r <= rounds; r++)); do printf '%s ' "$(h2_field "$work/h2-$sys-$r.txt" rps)"; done)"
  done
  printf '| **starling / haproxy** | **%sx** | | %sx | | | |\n' "$(ratio "${hrps[starling]}" "${hrps[haproxy]}")" \
    "$(ratio "${hp99[starling]}" "${hp99[haproxy]}")"
  echo
else
  echo "## HTTP/2 clients: skipped (no h2load; scripts/install-deps.sh --bench installs nghttp2-client)"
  echo
fi

# ------------------------------------------------------------------ 4. RSS
echo "## Resident memory (MiB): idle = mesh up, services registered, before any load; load = peak VmRSS sampled every 100 ms during the wrk rounds; VmHWM = the kernel's peak over the whole run; anon / file = RssAnon / RssFile (file: pages of the binary and shared libraries)"
echo
printf '| process | idle | idle anon / file | under wrk load | VmHWM | after all runs | after anon / file |\n|---|---|---|---|---|---|---|\n'
rss_row() { # rss_row <label> <pid> <idle KiB> <peak KiB>
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(mib "$3")" "${idle_split[$2]}" "$(mib "$4")" \
    "$(mib "$(hwm_kib "$2")")" "$(mib "$(rss_kib "$2")")" "$(anon_file "$2")"
}
rss_row "starling agent A (caller)" "$na_pid" "$idle_na" "$peak_na"
rss_row "starling agent B (instance)" "$nb_pid" "$idle_nb" "$peak_nb"
rss_row "haproxy A" "$hp_a_pid" "$idle_ha" "$peak_ha"
rss_row "haproxy B" "$hp_b_pid" "$idle_hb" "$peak_hb"
echo

# ------------------------------------------------------------------ Starling's counters
echo "## Starling's data-plane counters after the run"
echo
for n in na nb; do
  adm=${n}_admin
  printf '%s: ' "$n"
  for k in outbound_connections inbound_connections inbound_refused_tls upstream_connects upstream_reused upstream_connect_failures upstream_idle requests responses_2xx responses_5xx inbound_requests inbound_responses_2xx generated_responses; do
    printf '%s=%s ' "$k" "$(proxy_stat "${!adm}" "$k")"
  done
  echo
done
echo

# Pool health: a pooled data plane opens few upstream connections per request; many mean
# new mTLS handshakes on the request path (docs/bench-proxy.md, "Beyond 64 concurrent
# connections").
conn_a=$(proxy_stat "$na_admin" upstream_connects); req_a=$(proxy_stat "$na_admin" requests)
echo "pool: node A opened $conn_a upstream (mTLS) connections for $req_a requests$(awk -v c="$conn_a" -v r="$req_a" 'BEGIN { if (c > 0) printf " (one per %.0f)", r / c }')"
echo

# ------------------------------------------------------------------ profile (optional)
# perf_during <name> <system> <command...>: records both hops of the system (Starling's
# agents or HAProxy's two processes), one recording per hop, while the command runs;
# prints each hop's samples, its libraries and its hottest symbols (self time, all threads
# of the hop).
perf_during() {
  local name=$1 sys=$2; shift 2
  local -a hops perfs=()
  read -r -a hops <<<"$(hop_pids "$sys")"
  local hop
  for hop in 0 1; do
    perf record -q -e cpu-clock -F 999 -g -p "${hops[$hop]}" -o "$work/perf-$name-$hop.data" \
      >"$work/perf-$name-$hop.log" 2>&1 &
    perfs+=("$!")
    pids+=("$!")
  done
  perf_started() { [[ -s $work/perf-$name-0.data && -s $work/perf-$name-1.data ]] && echo yes || true; } # headers written
  wait_for 10 perf_started >/dev/null || die "perf record did not start (see $work/perf-$name-*.log)"
  "$@" >"$work/perf-$name.run" 2>&1 || true
  local p
  for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${perfs[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "### $name ($sys): $(grep -hE 'Requests/sec|mb_per_s|^finished in' "$work/perf-$name.run" | tr -s ' ')"
  echo
  echo '```'
  local label
  for hop in 0 1; do
    label=$([[ $hop == 0 ]] && echo A || echo B)
    echo "hop $label: $(perf report -i "$work/perf-$name-$hop.data" --stdio --no-children -g none -n --sort dso 2>/dev/null |
      awk '!/^#/ && NF >= 3 { n += $2 } END { printf "%d samples (about 1 ms of CPU each)", n }')"
    echo "hop $label, by library:"
    perf report -i "$work/perf-$name-$hop.data" --stdio --no-children -g none --sort dso \
      --percent-limit 0.5 2>/dev/null | grep -vE '^(#|$)' | sed -n 1,8p
    echo "hop $label, hottest symbols (kernel and user):"
    perf report -i "$work/perf-$name-$hop.data" --stdio --no-children -g none --sort dso,sym \
      --percent-limit 0.8 2>/dev/null | grep -vE '^(#|$)' | sed -n 1,25p
  done
  echo '```'
  echo
}
if ((profile)); then
  if command -v perf >/dev/null; then
    log "profile: perf record of each system's hops during wrk, bulk, new connections and HTTP/2 clients"
    echo "## Profile of each hop (perf, cpu-clock, self time)"
    echo
    for sys in starling haproxy; do
      perf_during "http-$sys" "$sys" wrk -t1 -c"$connections" -d"${duration}s" "${wrk_headers[@]}" "http://$(target_http "$sys")/"
      perf_during "bulk-$sys" "$sys" "$bin/starling-bulk" source --connect "$(target_tcp "$sys")" --seconds "$bulk_seconds"
      perf_during "conn-$sys" "$sys" wrk -t1 -c"$connections" -d"${conn_seconds}s" -H "Connection: close" "http://$(target_tcpweb "$sys")/"
      if command -v h2load >/dev/null; then
        perf_during "h2-$sys" "$sys" h2load -D "$duration" -c 4 -m 32 -t 1 "http://$(target_h2 "$sys")/"
      fi
    done
  else
    echo "(--profile: perf is not installed)"
  fi
fi

# ------------------------------------------------------------------ system calls (optional)
# strace_during <system>: strace -c of each of the system's two proxies during one wrk run
# through it; prints calls per request by name (the top ones) for each hop.
# strace_during <system> <wrk|paced>: system calls per request of both hops during one wrk
# run or one paced run (at --rate, its warm-up second counted).
strace_during() {
  local sys=$1 load=$2 hop=0 pid label
  local -a tracers=()
  for pid in $(hop_pids "$sys"); do
    strace -c -f -q -o "$work/strace-$load-$sys-$hop.txt" -p "$pid" >/dev/null 2>&1 &
    tracers+=("$!")
    pids+=("$!")
    hop=$((hop + 1))
  done
  traced() { for p in $(hop_pids "$sys"); do
      [[ $(awk '/^TracerPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null) =~ ^[1-9] ]] || return 0
    done; echo yes; }
  wait_for 10 traced >/dev/null || die "strace did not attach to $sys (see $work/strace-$load-$sys-*.txt)"
  local n
  if [[ $load == wrk ]]; then
    wrk -t1 -c"$connections" -d"${duration}s" "${wrk_headers[@]}" "http://$(target_http "$sys")/" >"$work/strace-$sys.wrk" 2>&1 || true
  else
    "$bin/starling-paced-client" --target "$(target_http "$sys")" --rate "$rate" --seconds "$paced_seconds" \
      --warmup-seconds 1 --connections 16 >"$work/strace-$sys.paced" 2>&1 || true
  fi
  for pid in "${tracers[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${tracers[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $load == wrk ]]; then n=$(wrk_requests "$work/strace-$sys.wrk"); else n=$(paced_sent "$work/strace-$sys.paced"); fi
  for hop in 0 1; do
    label=$([[ $hop == 0 ]] && echo A || echo B)
    echo "$sys hop $label ($n requests):" \
      "$(awk -v n="$n" 'n > 0 && $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            printf "%s %.2f %.2f\n", $NF, $4 / n, (NF == 6 ? $5 : 0) / n }' "$work/strace-$load-$sys-$hop.txt" |
        sort -k2 -nr | awk '$2 >= 0.01 { printf "%s%s %s", sep, $1, $2; if ($3 >= 0.01) printf " (%s failed)", $3; sep = ", " }')"
  done
}
if ((syscalls)); then
  if command -v strace >/dev/null; then
    log "syscalls: strace -c of each proxy during one more wrk run and one more paced run per system"
    echo "## System calls per request (strace -c -f; one wrk run per system, then one paced run at $rate requests/s)"
    echo
    echo '```'
    strace_during haproxy wrk
    strace_during starling wrk
    echo "at $rate requests/s:"
    strace_during haproxy paced
    strace_during starling paced
    echo '```'
    echo
  else
    echo "(--syscalls: strace is not installed)"
  fi
fi

# ------------------------------------------------------------------ allocations (optional)
# mallocs_during <system> <wrk|h2>: malloc calls per request of both hops during one wrk
# run (HTTP/1.1 clients) or one h2load run (HTTP/2 clients, as in 7.) through the system.
mallocs_during() {
  local sys=$1 load=$2 hop=0 pid n label
  local -a counters=()
  for pid in $(hop_pids "$sys"); do
    perf stat -x, -e "$malloc_event" -p "$pid" -o "$work/mallocs-$load-$sys-$hop.csv" >/dev/null 2>&1 &
    counters+=("$!")
    pids+=("$!")
    hop=$((hop + 1))
  done
  if [[ $sys == starling && -n $out ]]; then
    # One call in 8, with its stack (DWARF: the build keeps no frame pointers).
    for hop in a b; do
      pid=$([[ $hop == a ]] && echo "$na_pid" || echo "$nb_pid")
      perf record -q -e "$malloc_event" -c 8 --call-graph dwarf,16384 -p "$pid" \
        -o "$work/mallocs-$load-starling-$hop.data" >"$work/mallocs-record-$load-$hop.log" 2>&1 &
      counters+=("$!")
      pids+=("$!")
    done
  fi
  sleep 1 # perf stat gives no sign once attached: a second of head start before the load
  if [[ $load == wrk ]]; then
    wrk -t1 -c"$connections" -d"${duration}s" "${wrk_headers[@]}" "http://$(target_http "$sys")/" >"$work/mallocs-$load-$sys.out" 2>&1 || true
  else
    h2load -D "$duration" -c 4 -m 32 -t 1 "http://$(target_h2 "$sys")/" >"$work/mallocs-$load-$sys.out" 2>&1 || true
  fi
  for pid in "${counters[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${counters[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $load == wrk ]]; then n=$(wrk_requests "$work/mallocs-$load-$sys.out"); else n=$(h2_field "$work/mallocs-$load-$sys.out" requests); fi
  for hop in 0 1; do
    label=$([[ $hop == 0 ]] && echo A || echo B)
    awk -F, -v n="${n:-0}" -v s="$sys" -v h="$label" -v l="$load" '$3 ~ /malloc/ && n > 0 {
        printf "%s hop %s (%s): %.2f malloc calls per request (%s in %s requests)\n", s, h, l, $1 / n, $1, n }' \
      "$work/mallocs-$load-$sys-$hop.csv"
  done
}
if ((mallocs)); then
  libc=$(ldd "$starling" | awk '$1 == "libc.so.6" { print $3 }')
  if ! command -v perf >/dev/null; then
    echo "(--mallocs: perf is not installed)"
  elif [[ -z $libc ]] || ! perf probe -q -x "$libc" -a starling_malloc=malloc >"$work/probe.log" 2>&1; then
    echo "(--mallocs: no uprobe on malloc in '$libc': $(tail -1 "$work/probe.log" 2>/dev/null))"
  else
    malloc_event=probe_libc:starling_malloc
    log "mallocs: malloc calls of each proxy during one more wrk run (and h2load run) per system"
    echo "## Allocations per request (uprobe on $libc malloc, perf stat; one wrk run and one h2load run per system)"
    echo
    echo '```'
    mallocs_during haproxy wrk
    mallocs_during starling wrk
    if command -v h2load >/dev/null; then
      mallocs_during haproxy h2
      mallocs_during starling h2
    fi
    echo '```'
    echo
  fi
fi

# ------------------------------------------------------------------ 5. kTLS
echo "## kTLS on this machine"
echo
echo '```'
"$bin/starling-ktls-probe" 2>&1 || true
if [[ -r /proc/config.gz ]]; then echo "kernel config: $(zcat /proc/config.gz | grep -E '^(# )?CONFIG_TLS[ =]' || echo 'CONFIG_TLS absent')"; fi
if command -v modprobe >/dev/null; then echo "modprobe tls: $(modprobe tls 2>&1 && echo loaded)"; else echo "modprobe: not installed"; fi
echo '```'
echo

# ------------------------------------------------------------------ goals
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "not met"; fi; }
# The p99 budget is judged only when the machine's own noise is below it: direct's p99 (the
# client, the kernel and nginx alone) at most 3x the budget, and an added p99 not negative.
p99_goal() {
  if awk -v d="${pp99[direct]}" -v a="$added99_st" 'BEGIN { exit !(d > 450 || a < 0) }'; then
    echo "not judged: the machine's noise (direct's p99) exceeds the budget; run on a quiet machine"
  else
    met "$added99_st <= 150"
  fi
}
echo "## Issue 17's goals"
echo
echo "- req/s ≥ 1.2x HAProxy 2-hop with p99 no worse: ${rps_ratio}x, p99 ${p99_ratio}x — $(met "${rps[starling]} >= 1.2 * ${rps[haproxy]} && ${p99[starling]} <= ${p99[haproxy]}")"
echo "- p99 added over two hops at $rate req/s ≤ 150 µs: ${added99_st} µs (HAProxy adds $(awk -v a="${pp99[haproxy]}" -v b="${pp99[direct]}" 'BEGIN { printf "%.0f", a - b }') µs; direct's own p99 is $(printf '%.0f' "${pp99[direct]}") µs) — $(p99_goal)"
echo "- L4 bulk ≥ 1.0x HAProxy TCP: ${bulk_ratio}x — $(met "${mbps[starling]} >= ${mbps[haproxy]}")"
max_idle=$(maximum <<<"$idle_na"$'\n'"$idle_nb"); max_load=$(maximum <<<"$peak_na"$'\n'"$peak_nb"$'\n'"$hwm_na"$'\n'"$hwm_nb")
echo "- whole-agent RSS ≤ 16 MiB idle: $(mib "$max_idle") MiB — $(met "$max_idle <= 16384"); ≤ 24 MiB under load (VmHWM): $(mib "$max_load") MiB — $(met "$max_load <= 24576")"
echo "- errors: wrk direct ${errs[direct]}, haproxy ${errs[haproxy]}, starling ${errs[starling]}"
echo
echo "load average at end: $(loadavg)"
