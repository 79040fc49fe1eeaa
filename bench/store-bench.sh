#!/usr/bin/env bash
# Realtime store benchmarks of shopd, driven by bench/rtload.c:
#
#   1. get      store.get of one record, BENCH_CONNS (64) connections x BENCH_INFLIGHT (16)
#               requests in flight: ops/s, latency, server CPU per operation;
#   2. tx       3-operation store.transaction (product stock update + insert into orders
#               + insert into audit-logs), same concurrency: tx/s, latency, server CPU per tx;
#   3. fanout   BENCH_SUBSCRIBERS ("1000 10000") connections subscribed to one product,
#               BENCH_RATE (10) updates/s from one writer: push latency, pushes delivered,
#               server CPU per push, subscription evaluations per update (from /metrics).
#
# Every scenario gets a fresh shopd (fresh data directory, config written here) on
# 127.0.0.1 with a port picked by the server; scratch files go to build/bench/store.*
# and are removed at the end (BENCH_KEEP=1 keeps them). Every step is bounded in time
# and the server is stopped on exit. The result is printed as a Markdown block for
# docs/benchmarks.md; nothing is written there automatically.
#
# Environment: BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_CONNS (64),
# BENCH_INFLIGHT (16), BENCH_SUBSCRIBERS ("1000 10000"), BENCH_RATE (10),
# BENCH_SCENARIOS ("get tx fanout"), SHOPD_BIN (build/shopd), BENCH_KEEP=1,
# BENCH_PROFILE=1 (perf record -g of the server during each measured window; the top
# symbols are printed after the results).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP_SECONDS:-2}
CONNS=${BENCH_CONNS:-64}
INFLIGHT=${BENCH_INFLIGHT:-16}
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-1000 10000}
RATE=${BENCH_RATE:-10}
SCENARIOS=${BENCH_SCENARIOS:-get tx fanout}
PROFILE=${BENCH_PROFILE:-0}
SHOPD_BIN=${SHOPD_BIN:-build/shopd}
RTLOAD=build/bench/rtload

for v in BENCH_SECONDS WARMUP CONNS INFLIGHT RATE; do
  min=1
  [ "$v" = WARMUP ] && min=0
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt "$min" ]; then
    echo "store-bench: $v must be a whole number >= $min, got '${!v}'" >&2
    exit 2
  fi
done
for n in $SUBSCRIBERS; do
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
    echo "store-bench: BENCH_SUBSCRIBERS must list positive whole numbers, got '$SUBSCRIBERS'" >&2
    exit 2
  fi
done

# Shared helpers; the functions below that carry the same names are this script's own.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

say() { printf 'store-bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# ---- build --------------------------------------------------------------------------

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

# ---- file descriptors: the largest fan-out needs one per subscriber, on both sides ----

MAX_SUBS=0
for n in $SUBSCRIBERS; do [ "$n" -gt "$MAX_SUBS" ] && MAX_SUBS=$n; done
NEED_FDS=$((MAX_SUBS + CONNS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FDS" ]; then
  ulimit -Hn "$NEED_FDS" 2>/dev/null || true # root may raise the hard limit
  ulimit -n "$NEED_FDS" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
if [ "$FD_LIMIT" -lt "$NEED_FDS" ]; then
  say "file descriptor limit $FD_LIMIT is below the $NEED_FDS needed; fan-outs above $((FD_LIMIT - CONNS - 1024)) subscribers are skipped (run as root or raise ulimit -n)"
fi

# ---- scratch space, cleanup, watchdog -------------------------------------------------

mkdir -p build/bench
WORK=$(mktemp -d "$ROOT/build/bench/store.XXXXXX")
SHOPD_PID=""
PERF_PID=""
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
  stop_pid "$PERF_PID" 5
  stop_pid "$SHOPD_PID" 6
  if [ -n "$WATCHDOG_PID" ]; then
    [ -f "$WORK/watchdog.pid" ] && kill "$(cat "$WORK/watchdog.pid")" 2>/dev/null
    kill "$WATCHDOG_PID" 2>/dev/null || true
    wait "$WATCHDOG_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then say "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

NFAN=$(wc -w <<<"$SUBSCRIBERS")
# get + tx + each fan-out: warm-up, window, connecting and draining slack, server start/stop.
LIMIT=$(( (2 + NFAN) * (BENCH_SECONDS + WARMUP + 60) + MAX_SUBS / 100 + 120 ))
(
  sleep "$LIMIT" &
  echo $! >"$WORK/watchdog.pid"
  wait $!
  say "time limit of ${LIMIT}s reached, stopping"
  kill -TERM $$
) 2>/dev/null &
WATCHDOG_PID=$!

# ---- shopd -----------------------------------------------------------------------------

# The schema and seed are the shared ones of bench/lib.sh (write_store_config).
write_config() { # file, max connections
  BENCH_NAME=store-bench write_store_config "$1" "$2" ""
}

MAXCONN=$((MAX_SUBS + CONNS + 1000))

start_shopd() { # name
  local dir=$WORK/$1 i
  mkdir -p "$dir/data"
  write_config "$dir/config.json" "$MAXCONN"
  : >"$dir/stdout"
  "$SHOPD_BIN" serve --config "$dir/config.json" --port 0 --host 127.0.0.1 \
    --data-dir "$dir/data" --log-level warn >"$dir/stdout" 2>"$dir/stderr" &
  SHOPD_PID=$!
  SHOPD_PORT=""
  for ((i = 0; i < 200; i++)); do
    SHOPD_PORT=$(sed -n 's|^listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$dir/stdout" | head -n1 || true)
    [ -n "$SHOPD_PORT" ] && break
    kill -0 "$SHOPD_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "shopd exited at start"; }
    sleep 0.05
  done
  [ -n "$SHOPD_PORT" ] || die "shopd printed no listening line within 10 s"
  for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$SHOPD_PORT/healthz" && return 0
    sleep 0.05
  done
  die "shopd does not answer /healthz"
}

stop_shopd() {
  stop_pid "$SHOPD_PID" 6
  SHOPD_PID=""
}

# perf record of the server over the measured window: starts after the warm-up.
start_profile() { # name, delay seconds, duration seconds
  [ "$PROFILE" = 1 ] || return 0
  (
    sleep "$2"
    # DWARF unwinding: the server is built -O2 -g without frame pointers.
    exec perf record -q --call-graph dwarf,16384 -F 499 -p "$SHOPD_PID" -o "$WORK/$1.perf.data" -- sleep "$3"
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
      echo "self time, top 20 symbols:"
      perf report -i "$WORK/$1.perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 20
      echo
      echo "inclusive time (children), top 40 named symbols:"
      perf report -i "$WORK/$1.perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | grep -v -E '\] (0x[0-9a-f]+|\[unknown\]) ' | head -n 40
    } >"$WORK/$1.profile" || true
  else
    say "$1: perf recorded nothing: $(tr '\n' ' ' <"$WORK/$1.perf.log")"
  fi
}

# ---- scenarios -------------------------------------------------------------------------

ALL_OK=1
declare -A RES CMD
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

run_scenario() { # name, drain-and-connect slack seconds, rtload args...
  local name=$1 slack=$2 out rc=0
  shift 2
  start_shopd "$name"
  out=$WORK/$name.out
  CMD[$name]="$RTLOAD --port <port> --server-pid <shopd pid> $*"
  say "$name: rtload $*"
  start_profile "$name" "$WARMUP" "$BENCH_SECONDS"
  timeout $((BENCH_SECONDS + WARMUP + slack)) "$RTLOAD" --port "$SHOPD_PORT" --server-pid "$SHOPD_PID" "$@" \
    >"$out" 2>"$WORK/$name.err" || rc=$?
  finish_profile "$name"
  kill -0 "$SHOPD_PID" 2>/dev/null || { say "$name: shopd died"; tail -n 5 "$WORK/$name/stderr" >&2; ALL_OK=0; }
  stop_shopd
  RES[$name]=$(grep '^RESULT ' "$out" || true)
  if [ -z "${RES[$name]}" ]; then
    say "$name: rtload failed (status $rc)"
    cat "$WORK/$name.err" >&2
    ALL_OK=0
    return 0
  fi
  sed -n '2p' "$out" | sed 's/^/store-bench: /' >&2
  if [ "$rc" != 0 ]; then
    say "$name: incomplete run (status $rc):"
    grep -v '^rtload: [a-z]*: \(warm-up\|measuring\)' "$WORK/$name.err" | head -n 10 >&2 || true
    # Past what one core can write, shopd drops pushes to connections over the
    # backpressure mark (protocol §7): a measured outcome, reported in the table, not a
    # broken run. Anything else incomplete is.
    case $name in fanout-10000) say "$name: pushes dropped under backpressure (see the table)" ;; *) ALL_OK=0 ;; esac
  fi
}

f() { # scenario, field
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${RES[$1]:-}"
}

COMMON=(--seconds "$BENCH_SECONDS" --warmup "$WARMUP")
for s in $SCENARIOS; do
  case $s in
  get) run_scenario get 30 --mode get --conns "$CONNS" --inflight "$INFLIGHT" "${COMMON[@]}" --bucket products --key prod-1 ;;
  tx) run_scenario tx 30 --mode tx --conns "$CONNS" --inflight "$INFLIGHT" "${COMMON[@]}" --bucket products --key prod-1 \
    --orders-bucket orders --audit-bucket audit-logs ;;
  fanout)
    for n in $SUBSCRIBERS; do
      if [ $((n + CONNS + 1024)) -gt "$FD_LIMIT" ]; then say "fanout-$n: skipped (file descriptor limit)"; ALL_OK=0; continue; fi
      run_scenario "fanout-$n" $((60 + n / 100)) --mode fanout --subscribers "$n" --rate "$RATE" "${COMMON[@]}" \
        --query bench-product --bucket products --key prod-1
    done
    ;;
  *) die "unknown scenario '$s' in BENCH_SCENARIOS" ;;
  esac
done

# ---- report ------------------------------------------------------------------------------

verdict() { # value, op, target → "met" / "missed" / "n/a"
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "" || v + 0 < 0) { print "n/a"; exit }
    ok = (op == "<=") ? (v + 0 <= t + 0) : (op == ">=") ? (v + 0 >= t + 0) : (v + 0 == t + 0)
    print ok ? "met" : "**missed**" }'
}

CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[ -n "$CPU" ] || CPU=$(uname -m)
MEM=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && COMMIT="$COMMIT (with uncommitted changes)"

echo
echo "### Realtime store — $(date -u '+%Y-%m-%d %H:%M UTC') — commit $COMMIT"
echo
echo "Machine: $(nproc) × $CPU, $MEM RAM, Linux $(uname -r). $("$SHOPD_BIN" --version)."
echo "Load average (1/5/15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "rtload (one thread, epoll) and shopd share the same cores; server CPU is utime+stime of the"
echo "shopd process from /proc/PID/stat over the measured window (after a ${WARMUP} s warm-up); \"waiting"
echo "for a CPU\" is the server's run-queue time from /proc/PID/task/*/schedstat (other processes had"
echo "the cores), which lowers throughput and raises latency but not CPU per operation."
echo

for s in get tx; do
  [ -n "${RES[$s]:-}" ] || continue
  if [ "$s" = get ]; then title="store.get (one record)"; else title="store.transaction (update + 2 inserts)"; fi
  if [ -z "${HDR_LOAD:-}" ]; then
    echo "| request/response, $CONNS conns × $INFLIGHT in flight, ${BENCH_SECONDS} s | ops/s | p50 | p99 | max | server CPU/op | server CPU (kernel share) | server waiting for a CPU | generator CPU/op | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    HDR_LOAD=1
  fi
  printf '| %s | %s | %s µs | %s µs | %s µs | %s µs | %s %% of a core (%s %%) | %s %% of the time | %s µs | %s |\n' "$title" \
    "$(f "$s" ops_per_s)" "$(f "$s" lat_p50_us)" "$(f "$s" lat_p99_us)" "$(f "$s" lat_max_us)" \
    "$(f "$s" server_cpu_us_per_op)" "$(f "$s" server_cpu_pct)" "$(f "$s" server_sys_pct)" \
    "$(f "$s" server_runq_wait_pct)" "$(f "$s" gen_cpu_us_per_op)" "$(f "$s" errors)"
done
echo

FAN_HDR=0
for n in $SUBSCRIBERS; do
  s=fanout-$n
  [ -n "${RES[$s]:-}" ] || continue
  if [ "$FAN_HDR" = 0 ]; then
    echo "| fan-out, $RATE updates/s, ${BENCH_SECONDS} s | pushes received / expected | push p50 | p99 | max | server CPU/push (kernel share) | evaluations/update | update p50 | server waiting for a CPU | generator CPU/push |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    FAN_HDR=1
  fi
  printf '| %s subscribers | %s / %s | %s µs | %s µs | %s µs | %s µs (%s %%) | %s | %s µs | %s %% of the time | %s µs |\n' \
    "$(f "$s" subscribers)" "$(f "$s" pushes)" "$(f "$s" expected)" "$(f "$s" push_p50_us)" "$(f "$s" push_p99_us)" \
    "$(f "$s" push_max_us)" "$(f "$s" server_cpu_us_per_push)" "$(f "$s" server_sys_pct)" "$(f "$s" evals_per_update)" \
    "$(f "$s" update_p50_us)" "$(f "$s" server_runq_wait_pct)" "$(f "$s" gen_cpu_us_per_push)"
done
[ "$FAN_HDR" = 1 ] && echo

echo "| target | measured | |"
echo "|---|---:|---|"
[ -n "${RES[get]:-}" ] && echo "| server CPU ≤ 1.5 µs per store.get | $(f get server_cpu_us_per_op) µs | $(verdict "$(f get server_cpu_us_per_op)" '<=' 1.5) |"
[ -n "${RES[tx]:-}" ] && echo "| ≥ 26 000 transactions/s | $(f tx ops_per_s) | $(verdict "$(f tx ops_per_s)" '>=' 26000) |"
if [ -n "${RES[fanout-1000]:-}" ]; then
  echo "| fan-out to 1000: push p99 ≤ 3 ms | $(f fanout-1000 push_p99_us) µs | $(verdict "$(f fanout-1000 push_p99_us)" '<=' 3000) |"
  echo "| fan-out to 1000: ≤ 2 µs server CPU per push | $(f fanout-1000 server_cpu_us_per_push) µs | $(verdict "$(f fanout-1000 server_cpu_us_per_push)" '<=' 2) |"
  echo "| fan-out to 1000: exactly 1 evaluation per update | $(f fanout-1000 evals_per_update) | $(verdict "$(f fanout-1000 evals_per_update)" '==' 1) |"
  echo "| fan-out to 1000: every push delivered | $(f fanout-1000 pushes) / $(f fanout-1000 expected) | $(verdict "$(f fanout-1000 pushes)" '==' "$(f fanout-1000 expected)") |"
fi
echo
echo "Commands (port and pid picked at run time; a fresh server and data directory per line):"
echo
echo '```'
echo "ulimit -n $FD_LIMIT"
echo "shopd serve --config <scratch>/config.json --port 0 --host 127.0.0.1 --data-dir <fresh dir> --log-level warn"
echo "  # config: bench/store-bench.sh write_config (products, orders, audit-logs; query bench-product ="
echo "  #   {\"bucket\":\"products\",\"op\":\"get\",\"key\":\"prod-1\"}; http.maxConnections $MAXCONN)"
for s in get tx; do [ -n "${CMD[$s]:-}" ] && echo "${CMD[$s]}"; done
for n in $SUBSCRIBERS; do [ -n "${CMD[fanout-$n]:-}" ] && echo "${CMD[fanout-$n]}"; done
echo '```'

if [ "$PROFILE" = 1 ]; then
  for s in get tx $(for n in $SUBSCRIBERS; do echo "fanout-$n"; done); do
    [ -s "$WORK/$s.profile" ] || continue
    echo
    echo "Server profile, $s (perf record --call-graph dwarf -F 499 -p <shopd pid> over the measured window):"
    echo
    echo '```'
    cat "$WORK/$s.profile"
    echo '```'
  done
fi

[ "$ALL_OK" = 1 ] || { say "some scenarios were incomplete (see above)"; exit 1; }
say "done"
