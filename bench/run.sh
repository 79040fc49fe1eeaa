#!/usr/bin/env bash
# Benchmarks of the server foundation, run by `make bench`:
#
#   1. GET /healthz throughput with wrk against shopd and against nginx from Debian
#      answering the same bytes (bench/nginx.conf.in: 1 worker, access_log off), each
#      after a warm-up, and the ratio shopd / nginx;
#   2. shopd's resident memory idle and with BENCH_WS_CONNS (10 000) idle WebSocket
#      connections (bench/ws-idle.mjs), and the bytes each connection costs;
#   3. then the realtime scripts named in BENCH_SUITES ("store auth rules shop"):
#      bench/store-bench.sh, bench/auth-bench.sh, bench/rules-bench.sh,
#      bench/shop-bench.sh, each with its own scratch directory, watchdog and report
#      (their own variables apply: BENCH_SCENARIOS for store-bench.sh, …). A failing
#      script is reported and the next one still runs; the exit status is 1 if any part
#      failed. BENCH_SUITES="" runs only parts 1 and 2.
#
# Everything listens on 127.0.0.1 with ports picked free at run time; scratch files go
# to build/bench/run.*; every server is stopped on exit, and every step is bounded in
# time. The result is printed as a markdown block to paste into docs/benchmarks.md;
# nothing is written there automatically.
#
# Environment: BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_WS_CONNS (10000),
# BENCH_THREADS (2), BENCH_CONNECTIONS (64), SHOPD_BIN (build/shopd),
# BENCH_KEEP=1 keeps the scratch directory.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP_SECONDS:-2}
WS_CONNS=${BENCH_WS_CONNS:-10000}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
SHOPD_BIN=${SHOPD_BIN:-build/shopd}

for v in BENCH_SECONDS WARMUP WS_CONNS THREADS CONNS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
SUITES=${BENCH_SUITES-store auth rules shop}
for s in $SUITES; do
  case $s in store | auth | rules | shop) ;; *) echo "bench: unknown suite '$s' in BENCH_SUITES (store auth rules shop)" >&2; exit 2 ;; esac
done

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# ---- tools ------------------------------------------------------------------------

need_install=0
for t in wrk nginx node curl; do
  command -v "$t" >/dev/null 2>&1 || { say "missing $t"; need_install=1; }
done
[ -f node_modules/ws/package.json ] || { say "missing node_modules/ws"; need_install=1; }
if [ "$need_install" -eq 1 ]; then
  say "installing benchmark tools with scripts/install-deps --bench"
  scripts/install-deps --bench
  command -v curl >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends curl >/dev/null
fi
for t in wrk nginx node curl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is still missing after scripts/install-deps --bench"
done
[ -f node_modules/ws/package.json ] || die "node_modules/ws is missing (npm ci)"
[ -x "$SHOPD_BIN" ] || die "$SHOPD_BIN is not built (make)"
SHOPD_BIN=$(cd "$(dirname "$SHOPD_BIN")" && pwd)/$(basename "$SHOPD_BIN")

# 10 000 sockets need more descriptors than the usual soft limit; children inherit it.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=1048576; fi
ulimit -n "$hard" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((WS_CONNS + 256)) ]; then
  WS_CONNS=$(( $(ulimit -n) - 256 ))
  say "file descriptor limit $(ulimit -n) allows only $WS_CONNS WebSocket connections"
fi

# ---- scratch space, cleanup, watchdog -----------------------------------------------

mkdir -p build/bench
WORK=$(mktemp -d "$ROOT/build/bench/run.XXXXXX")
SHOPD_PID=""
NGINX_PID=""
WATCHDOG_PID=""

stop_pid() { # pid, seconds to wait after SIGTERM before SIGKILL
  local pid=$1 wait_s=${2:-5} i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$SHOPD_PID" 6
  stop_pid "$NGINX_PID" 5
  if [ -n "$WATCHDOG_PID" ]; then
    pkill -P "$WATCHDOG_PID" 2>/dev/null || true # its sleep
    kill "$WATCHDOG_PID" 2>/dev/null || true
    wait "$WATCHDOG_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then say "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# The whole run may not take longer than this (two wrk runs, warm-ups, the WebSocket
# step and slack for starting and stopping).
LIMIT=$((2 * (BENCH_SECONDS + WARMUP) + 240))
( sleep "$LIMIT"; say "time limit of ${LIMIT}s reached, stopping"; kill -TERM $$ ) 2>/dev/null &
WATCHDOG_PID=$!

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # url, seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---- shopd ------------------------------------------------------------------------

start_shopd() { # name
  local dir=$WORK/$1 i
  mkdir -p "$dir/data" "$dir/public"
  : >"$dir/stdout"
  cat >"$dir/config.json" <<EOF
{ "name": "bench", "http": { "maxConnections": $((WS_CONNS + 1000)) } }
EOF
  "$SHOPD_BIN" serve --config "$dir/config.json" --host 127.0.0.1 --port 0 \
    --data-dir "$dir/data" --public-dir "$dir/public" --log-level warn \
    >"$dir/stdout" 2>"$dir/stderr" &
  SHOPD_PID=$!
  SHOPD_PORT=""
  for ((i = 0; i < 200; i++)); do
    SHOPD_PORT=$(sed -n 's|^listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$dir/stdout" | head -n1 || true)
    [ -n "$SHOPD_PORT" ] && break
    kill -0 "$SHOPD_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "shopd exited at start"; }
    sleep 0.05
  done
  [ -n "$SHOPD_PORT" ] || die "shopd printed no listening line within 10 s"
  wait_http "http://127.0.0.1:$SHOPD_PORT/healthz" 5 || die "shopd does not answer /healthz"
}

stop_shopd() {
  stop_pid "$SHOPD_PID" 6
  SHOPD_PID=""
}

# ---- wrk --------------------------------------------------------------------------

WRK_CMD="wrk -t$THREADS -c$CONNS -d${BENCH_SECONDS}s --latency"

run_wrk() { # name url → $WORK/<name>.wrk
  local out=$WORK/$1.wrk
  say "$1: warm-up ${WARMUP}s"
  timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$2" >/dev/null || die "$1: wrk warm-up failed"
  say "$1: $WRK_CMD $2"
  timeout $((BENCH_SECONDS + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${BENCH_SECONDS}s" --latency "$2" >"$out" ||
    die "$1: wrk failed: $(cat "$out")"
}

wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$WORK/$1.wrk"; }
wrk_pct() { awk -v p="$2" '$1 == p { print $2; exit }' "$WORK/$1.wrk"; }
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$WORK/$1.wrk"
}

# ---- 1. throughput ----------------------------------------------------------------

start_shopd throughput
SHOPD_URL="http://127.0.0.1:$SHOPD_PORT/healthz"
sleep 0.5
RSS_START=$(rss_kib "$SHOPD_PID")

# nginx answers exactly what shopd answers: same body, same Content-Type.
curl -s -D "$WORK/shopd.headers" -o "$WORK/shopd.body" "$SHOPD_URL"
CT=$(awk -F': ' 'tolower($1) == "content-type" { sub(/\r$/, "", $2); print $2 }' "$WORK/shopd.headers")
BODY=$(cat "$WORK/shopd.body")
[ -n "$CT" ] || die "shopd's /healthz has no Content-Type"
case $BODY in *"'"* | *'\'*) die "cannot put shopd's body into nginx.conf: $BODY" ;; esac

run_wrk shopd "$SHOPD_URL"
RSS_AFTER_WRK=$(rss_kib "$SHOPD_PID")
stop_shopd

NGINX_DIR=$WORK/nginx
mkdir -p "$NGINX_DIR/tmp"
NGINX_PORT=$(free_port)
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
sed -e "s|@DIR@|$(esc "$NGINX_DIR")|g" -e "s|@PORT@|$NGINX_PORT|g" \
    -e "s|@CONTENT_TYPE@|$(esc "$CT")|g" -e "s|@BODY@|$(esc "$BODY")|g" \
    bench/nginx.conf.in >"$NGINX_DIR/nginx.conf"
nginx -p "$NGINX_DIR/" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' \
  >"$NGINX_DIR/stdout" 2>&1 &
NGINX_PID=$!
NGINX_URL="http://127.0.0.1:$NGINX_PORT/healthz"
wait_http "$NGINX_URL" 10 || { cat "$NGINX_DIR/stdout" "$NGINX_DIR/error.log" >&2 2>/dev/null; die "nginx did not start"; }
curl -s -D "$WORK/nginx.headers" -o "$WORK/nginx.body" "$NGINX_URL"
cmp -s "$WORK/shopd.body" "$WORK/nginx.body" || die "nginx's body differs from shopd's"
NGINX_CT=$(awk -F': ' 'tolower($1) == "content-type" { sub(/\r$/, "", $2); print $2 }' "$WORK/nginx.headers")
[ "$NGINX_CT" = "$CT" ] || die "nginx's Content-Type '$NGINX_CT' differs from shopd's '$CT'"

run_wrk nginx "$NGINX_URL"
stop_pid "$NGINX_PID" 5
NGINX_PID=""

SHOPD_RPS=$(wrk_rps shopd)
NGINX_RPS=$(wrk_rps nginx)
[ -n "$SHOPD_RPS" ] && [ -n "$NGINX_RPS" ] || die "could not read Requests/sec from wrk"
RATIO=$(awk -v a="$SHOPD_RPS" -v b="$NGINX_RPS" 'BEGIN { printf "%.2f", a / b }')
SHOPD_ERR=$(wrk_errors shopd)
NGINX_ERR=$(wrk_errors nginx)

# ---- 2. memory with idle WebSocket connections ------------------------------------

start_shopd memory
sleep 1
RSS_IDLE=$(rss_kib "$SHOPD_PID")
say "memory: opening $WS_CONNS idle WebSocket connections"
WS_CMD="node bench/ws-idle.mjs --url ws://127.0.0.1:<port>/ --pid <shopd pid> --count $WS_CONNS --batch 250 --hold-ms 2000"
WS_OK=1
WS_JSON=$(WS_IDLE_RAISED=1 timeout 180 node bench/ws-idle.mjs --url "ws://127.0.0.1:$SHOPD_PORT/" --pid "$SHOPD_PID" \
  --count "$WS_CONNS" --batch 250 --hold-ms 2000 --timeout-ms 150000) || WS_OK=0
[ -n "$WS_JSON" ] || die "ws-idle.mjs printed nothing"
jget() { node -e 'const o=JSON.parse(process.argv[1]);const v=o[process.argv[2]];console.log(v===null||v===undefined?"":v)' "$WS_JSON" "$1"; }
WS_OPENED=$(jget opened)
WS_STILL=$(jget stillOpen)
WS_FAILED=$(jget failed)
WS_OPEN_MS=$(jget openMs)
RSS_WS=$(jget rssKiB)
RSS_WS_BEFORE=$(jget rssBeforeKiB)
PER_CONN=$(awk -v a="$RSS_WS" -v b="$RSS_IDLE" -v n="$WS_OPENED" 'BEGIN { if (n > 0) printf "%d", (a - b) * 1024 / n; else print "n/a" }')
SHOPD_ALIVE=yes
kill -0 "$SHOPD_PID" 2>/dev/null || SHOPD_ALIVE=no
stop_shopd

# ---- report -----------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[ -n "$CPU" ] || CPU=$(uname -m)
MEM=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && COMMIT="$COMMIT (with uncommitted changes)"
NGINX_V=$(nginx -v 2>&1 | sed 's|^nginx version: ||')
WRK_V=$( { wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }')

cat <<EOF

### $(date -u '+%Y-%m-%d %H:%M UTC') — commit $COMMIT

Machine: $(nproc) × $CPU, $MEM RAM, Linux $(uname -r). $("$SHOPD_BIN" --version), $NGINX_V, wrk $WRK_V, Node $(node --version).
wrk, the server under test and (for memory) the Node client share the same cores.

| GET /healthz, keep-alive | shopd | nginx (1 worker) | shopd / nginx |
|---|---:|---:|---:|
| requests/s | $SHOPD_RPS | $NGINX_RPS | $RATIO |
| latency p50 | $(wrk_pct shopd 50%) | $(wrk_pct nginx 50%) | |
| latency p99 | $(wrk_pct shopd 99%) | $(wrk_pct nginx 99%) | |
| errors / non-2xx | $SHOPD_ERR | $NGINX_ERR | |

| shopd memory (VmRSS) | |
|---|---:|
| idle, fresh start | $(mib "$RSS_IDLE") |
| after the wrk run (64 connections closed) | $(mib "$RSS_AFTER_WRK") |
| with $WS_OPENED idle WebSocket connections (welcomed, held 2 s) | $(mib "$RSS_WS") |
| per WebSocket connection | $PER_CONN bytes |

Commands (ports picked free at run time):

\`\`\`
shopd serve --host 127.0.0.1 --port 0 --log-level warn --config <{"http":{"maxConnections":$((WS_CONNS + 1000))}}> --data-dir <tmp> --public-dir <empty>
nginx -p <tmp>/ -c <tmp>/nginx.conf -g 'daemon off;'      # from bench/nginx.conf.in: 1 worker, access_log off,
                                                          # location = /healthz { return 200 '$BODY'; } as $CT
wrk -t$THREADS -c$CONNS -d${WARMUP}s <url>/healthz    # warm-up, discarded
$WRK_CMD <url>/healthz
$WS_CMD
\`\`\`
EOF

if [ "$SHOPD_ERR" != 0 ]; then say "shopd answered $SHOPD_ERR requests with errors or non-2xx"; WS_OK=0; fi
if [ "$SHOPD_ALIVE" != yes ]; then say "shopd died during the WebSocket step"; WS_OK=0; fi
FAILED=""
if [ "$WS_OK" != 1 ]; then
  say "WebSocket step incomplete: opened $WS_OPENED of $WS_CONNS, $WS_STILL still open at the end, $WS_FAILED failed (rss before $RSS_WS_BEFORE KiB, open took ${WS_OPEN_MS} ms)"
  FAILED="foundation"
else
  say "done (WebSocket connections opened in ${WS_OPEN_MS} ms)"
fi

# ---- 3. the realtime scripts --------------------------------------------------------

# The watchdog above bounds parts 1 and 2 only; every script has its own.
if [ -n "$WATCHDOG_PID" ]; then
  pkill -P "$WATCHDOG_PID" 2>/dev/null || true
  kill "$WATCHDOG_PID" 2>/dev/null || true
  wait "$WATCHDOG_PID" 2>/dev/null || true
  WATCHDOG_PID=""
fi
for s in $SUITES; do
  say "running bench/$s-bench.sh"
  SHOPD_BIN=$SHOPD_BIN "bench/$s-bench.sh" || { say "bench/$s-bench.sh failed"; FAILED="$FAILED $s"; }
done
[ -z "$FAILED" ] || { say "failed: ${FAILED# }"; exit 1; }
