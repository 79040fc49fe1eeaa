# shellcheck shell=bash disable=SC2034 # ALL_OK, RES, CMD are for the sourcing scripts
# Shared part of bench/auth-bench.sh, bench/rules-bench.sh and bench/shop-bench.sh
# (sourced, not run): building, a scratch directory under build/bench/, cleanup on exit,
# a watchdog, starting and stopping shopd, running bench/rtload.c with an optional
# perf profile of the server, reading RESULT lines and printing the report header.
#
# The sourcing script sets BENCH_NAME (message prefix and scratch directory name) and
# calls, in order: bench_common_env, bench_build, bench_scratch <time limit in seconds>;
# then start_shopd/run_rtload/stop_shopd as it likes, and finally the report helpers.
# Everything started here is stopped by the EXIT trap: servers by their process ids,
# perf by its id, the watchdog by its id.

say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { say "$*"; exit 1; }

# BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_PROFILE (0), SHOPD_BIN (build/shopd),
# BENCH_PIN (0; 1: shopd on the last CPU, rtload on CPU 0, with taskset)
bench_common_env() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
  ROOT=$PWD
  BENCH_SECONDS=${BENCH_SECONDS:-10}
  WARMUP=${BENCH_WARMUP_SECONDS:-2}
  PROFILE=${BENCH_PROFILE:-0}
  SHOPD_BIN=${SHOPD_BIN:-build/shopd}
  RTLOAD=build/bench/rtload
  PIN_SERVER=() PIN_GEN=()
  if [ "${BENCH_PIN:-0}" = 1 ]; then
    if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
      PIN_SERVER=(taskset -c $(($(nproc) - 1))) PIN_GEN=(taskset -c 0)
    else
      say "BENCH_PIN=1 needs taskset and two CPUs; not pinning"
    fi
  fi
  need_whole BENCH_SECONDS "$BENCH_SECONDS" 1
  need_whole BENCH_WARMUP_SECONDS "$WARMUP" 0
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  ALL_OK=1 # set to 0 by run_rtload when a run is incomplete; the scripts exit 1 then
  declare -gA RES CMD
}

need_whole() { # name, value, minimum
  if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ]; then
    echo "$BENCH_NAME: $1 must be a whole number >= $3, got '$2'" >&2
    exit 2
  fi
}

bench_build() {
  say "building $SHOPD_BIN and $RTLOAD"
  if [ "$SHOPD_BIN" = build/shopd ]; then make -s build/shopd >&2 || die "make build/shopd failed"; fi
  make -s "$RTLOAD" >&2 || die "make $RTLOAD failed"
  [ -x "$SHOPD_BIN" ] || die "$SHOPD_BIN is not built"
  SHOPD_BIN=$(cd "$(dirname "$SHOPD_BIN")" && pwd)/$(basename "$SHOPD_BIN")
  command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
  if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null 2>&1; then
    say "BENCH_PROFILE=1 but perf is missing (apt-get install linux-perf); profiling off"
    PROFILE=0
  fi
}

# Raises the descriptor limit to at least $1 if it can; prints the limit in effect.
raise_fds() {
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$1" ]; then
    ulimit -Hn "$1" 2>/dev/null || true # root may raise the hard limit
    ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  fi
  local l
  l=$(ulimit -n)
  [ "$l" = unlimited ] && l=1048576
  echo "$l"
}

# ---- scratch space, cleanup, watchdog -----------------------------------------------

SHOPD_PIDS=()
PERF_PID=""
WATCHDOG_PID=""
WORK=""

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

bench_cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  stop_pid "$PERF_PID" 5
  for p in "${SHOPD_PIDS[@]}"; do stop_pid "$p" 6; done
  if [ -n "$WATCHDOG_PID" ]; then
    [ -f "$WORK/watchdog.pid" ] && kill "$(cat "$WORK/watchdog.pid")" 2>/dev/null
    kill "$WATCHDOG_PID" 2>/dev/null || true
    wait "$WATCHDOG_PID" 2>/dev/null || true
  fi
  if [ -n "$WORK" ]; then
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}

bench_scratch() { # time limit for the whole script, seconds
  mkdir -p build/bench
  WORK=$(mktemp -d "$ROOT/build/bench/$BENCH_NAME.XXXXXX")
  trap bench_cleanup EXIT
  trap 'say "interrupted"; exit 130' INT TERM
  local limit=$1
  (
    sleep "$limit" &
    echo $! >"$WORK/watchdog.pid"
    wait $!
    say "time limit of ${limit}s reached, stopping"
    kill -TERM $$
  ) 2>/dev/null &
  WATCHDOG_PID=$!
}

# ---- shopd ----------------------------------------------------------------------------

# start_shopd <name> <config file>: a fresh data directory under $WORK/<name>; sets
# SHOPD_PID and SHOPD_PORT (several servers may run at once; all are stopped on exit).
start_shopd() {
  local dir=$WORK/$1 i
  mkdir -p "$dir/data" "$dir/public"
  : >"$dir/stdout"
  "${PIN_SERVER[@]}" "$SHOPD_BIN" serve --config "$2" --port 0 --host 127.0.0.1 --data-dir "$dir/data" \
    --public-dir "$dir/public" --log-level warn >"$dir/stdout" 2>"$dir/stderr" &
  SHOPD_PID=$!
  SHOPD_PIDS+=("$SHOPD_PID")
  SHOPD_PORT=""
  for ((i = 0; i < 200; i++)); do
    SHOPD_PORT=$(sed -n 's|^listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$dir/stdout" | head -n1 || true)
    [ -n "$SHOPD_PORT" ] && break
    kill -0 "$SHOPD_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "shopd ($1) exited at start"; }
    sleep 0.05
  done
  [ -n "$SHOPD_PORT" ] || die "shopd ($1) printed no listening line within 10 s"
  for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$SHOPD_PORT/healthz" && return 0
    sleep 0.05
  done
  die "shopd ($1) does not answer /healthz"
}

stop_shopd() { # pid
  local p rest=()
  stop_pid "$1" 6
  for p in "${SHOPD_PIDS[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
  SHOPD_PIDS=("${rest[@]}")
}

# ---- perf -----------------------------------------------------------------------------

# perf record of the server over the measured window: starts after the warm-up.
start_profile() { # name, pid, delay seconds, duration seconds
  [ "$PROFILE" = 1 ] || return 0
  (
    sleep "$3"
    # DWARF unwinding: the server is built -O2 -g without frame pointers.
    exec perf record -q --call-graph dwarf,16384 -F 499 -p "$2" -o "$WORK/$1.perf.data" -- sleep "$4"
  ) >"$WORK/$1.perf.log" 2>&1 &
  PERF_PID=$!
}

finish_profile() { # name
  [ "$PROFILE" = 1 ] || return 0
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  if [ -s "$WORK/$1.perf.data" ]; then
    say "$1: reading the profile"
    {
      echo "self time, top 25 symbols:"
      perf report -i "$WORK/$1.perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 25
      echo
      echo "inclusive time (children), top 40 named symbols:"
      perf report -i "$WORK/$1.perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | grep -v -E '\] (0x[0-9a-f]+|\[unknown\]) ' | head -n 40
    } >"$WORK/$1.profile" || true
  else
    say "$1: perf recorded nothing: $(tr '\n' ' ' <"$WORK/$1.perf.log")"
  fi
}

print_profiles() { # names...
  [ "$PROFILE" = 1 ] || return 0
  local s
  for s in "$@"; do
    [ -s "$WORK/$s.profile" ] || continue
    echo
    echo "Server profile, $s (perf record --call-graph dwarf -F 499 -p <shopd pid> over the measured window):"
    echo
    echo '```'
    cat "$WORK/$s.profile"
    echo '```'
  done
}

# ---- rtload ---------------------------------------------------------------------------

# run_rtload <name> <slack seconds> <rtload args...>: against SHOPD_PID/SHOPD_PORT;
# RES[name] gets the RESULT line, CMD[name] the command line.
run_rtload() {
  local name=$1 slack=$2 out rc=0
  shift 2
  out=$WORK/$name.out
  CMD[$name]="rtload --port <port> --server-pid <shopd pid> $*"
  say "$name: rtload $*"
  start_profile "$name" "$SHOPD_PID" "$WARMUP" "$BENCH_SECONDS"
  timeout $((BENCH_SECONDS + WARMUP + slack)) "${PIN_GEN[@]}" "$RTLOAD" --port "$SHOPD_PORT" --server-pid "$SHOPD_PID" "$@" \
    >"$out" 2>"$WORK/$name.err" || rc=$?
  finish_profile "$name"
  if ! kill -0 "$SHOPD_PID" 2>/dev/null; then
    say "$name: shopd died"
    tail -n 5 "$WORK"/*/stderr >&2 || true
    ALL_OK=0
  fi
  RES[$name]=$(grep '^RESULT ' "$out" || true)
  if [ -z "${RES[$name]}" ]; then
    say "$name: rtload failed (status $rc)"
    cat "$WORK/$name.err" >&2
    ALL_OK=0
    return 0
  fi
  sed -n '2p' "$out" | sed "s/^/$BENCH_NAME: /" >&2
  if [ "$rc" != 0 ]; then
    say "$name: incomplete run (status $rc):"
    grep -v '^rtload: [a-z]*: \(warm-up\|measuring\)' "$WORK/$name.err" | head -n 10 >&2 || true
    ALL_OK=0
  fi
}

f() { # name, field of its RESULT line
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${RES[$1]:-}"
}

# ---- report ---------------------------------------------------------------------------

verdict() { # value, op, target → "met" / "**missed**" / "n/a"
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "" || v + 0 < 0) { print "n/a"; exit }
    ok = (op == "<=") ? (v + 0 <= t + 0) : (op == ">=") ? (v + 0 >= t + 0) : (v + 0 == t + 0)
    print ok ? "met" : "**missed**" }'
}

report_header() { # title
  local cpu mem commit
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  [ -n "$cpu" ] || cpu=$(uname -m)
  mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (with uncommitted changes)"
  echo
  echo "### $1 — $(date -u '+%Y-%m-%d %H:%M UTC') — commit $commit"
  echo
  echo "Machine: $(nproc) × $cpu, $mem RAM, Linux $(uname -r). $("$SHOPD_BIN" --version)."
  echo "Load average (1/5/15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "rtload (one thread, epoll) and shopd share the same cores; server CPU is utime+stime of the"
  echo "shopd process from /proc/PID/stat over the measured window (after a ${WARMUP} s warm-up);"
  echo "\"waiting for a CPU\" is the server's run-queue time from /proc/PID/task/*/schedstat."
  [ ${#PIN_SERVER[@]} -gt 0 ] && echo "Pinned (BENCH_PIN=1): shopd on CPU $(($(nproc) - 1)), rtload on CPU 0."
  echo
}

report_commands() { # names...
  local s
  echo "Commands (ports and pids picked at run time):"
  echo
  echo '```'
  for s in "$@"; do [ -n "${CMD[$s]:-}" ] && echo "${CMD[$s]}"; done
  echo '```'
}

# The store-bench.sh schema and seed (products, orders, audit-logs; prod-1 with a stock
# that never runs out), for get and tx; $2 = max connections, $3 = extra top-level JSON
# members (with a leading comma) or empty.
write_store_config() { # file, max connections, extra
  cat >"$1" <<EOF
{ "name": "$BENCH_NAME",
  "http": { "maxConnections": $2 },
  "shutdown": { "gracePeriodMs": 500 },
  "buckets": {
    "products": { "key": "id", "schema": {
        "id": { "type": "string", "generated": "uuid" },
        "title": { "type": "string", "required": true },
        "price": { "type": "number", "required": true, "min": 0 },
        "stock": { "type": "integer", "min": 0, "default": 0 },
        "active": { "type": "boolean", "default": true } },
      "indexes": ["active"] },
    "orders": { "key": "id", "schema": {
        "id": { "type": "string", "generated": "cuid" },
        "userId": { "type": "string", "required": true },
        "productId": { "type": "string", "required": true },
        "quantity": { "type": "integer", "min": 1, "default": 1 },
        "total": { "type": "number", "min": 0 },
        "status": { "type": "string", "enum": ["placed", "paid", "shipped"], "default": "placed" } },
      "indexes": ["userId"] },
    "audit-logs": { "key": "id", "schema": {
        "id": { "type": "string", "generated": "cuid" },
        "action": { "type": "string", "required": true },
        "userId": { "type": "string" },
        "productId": { "type": "string" } } } },
  "queries": {
    "bench-product": { "bucket": "products", "op": "get", "key": "prod-1" } },
  "seed": { "products": [
    { "id": "prod-1", "title": "Wireless Keyboard", "price": 79.99, "stock": 1000000000 },
    { "id": "prod-2", "title": "USB-C Hub", "price": 45, "stock": 50 },
    { "id": "prod-3", "title": "Laptop Stand", "price": 120, "stock": 3 } ] }$3 }
EOF
}
