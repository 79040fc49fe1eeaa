#!/usr/bin/env bash
# Event fan-out of shopd's rules engine, driven by bench/rtload.c --mode events:
#
#   BENCH_EVENT_SUBSCRIBERS ("1000") connections each send rules.subscribe
#   {pattern: "order.*"}; one emitter connection sends rules.emit {topic:
#   "order.placed", data: {seq, sentAt}} BENCH_EVENT_RATE (100) times per second.
#   Measured: push latency (the time rtload read the push minus the event's
#   data.sentAt, one monotonic clock), and the same to the kernel's receive time of the
#   push on the subscriber's socket (--rx-timestamps: leaves out rtload's own delay in
#   reaching the socket), pushes received vs expected (events × subscribers), server
#   CPU per push (the emits' own handling included), emit round trip. Targets for
#   1 000 subscribers at 100 events/s: push p99 ≤ 3 ms, ≤ 2 µs server CPU per push.
#
# Each subscriber count gets a fresh shopd (no auth; the rules of config/ecommerce.json,
# none of which reacts to events, so an emit reaches the rule matcher but fires nothing).
# Scratch files go to build/bench/rules-bench.*; the server is stopped on exit.
#
# Environment: BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_EVENT_SUBSCRIBERS
# ("1000"), BENCH_EVENT_RATE (100), SHOPD_BIN (build/shopd), BENCH_KEEP=1,
# BENCH_PROFILE=1 (perf record of the server during the measured window).
set -euo pipefail

BENCH_NAME=rules-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_common_env
SUBSCRIBERS=${BENCH_EVENT_SUBSCRIBERS:-1000}
RATE=${BENCH_EVENT_RATE:-100}
need_whole BENCH_EVENT_RATE "$RATE" 1
MAX_SUBS=0
for n in $SUBSCRIBERS; do
  need_whole BENCH_EVENT_SUBSCRIBERS "$n" 1
  [ "$n" -gt "$MAX_SUBS" ] && MAX_SUBS=$n
done
[ "$MAX_SUBS" -gt 0 ] || die "BENCH_EVENT_SUBSCRIBERS is empty"
bench_build
FD_LIMIT=$(raise_fds $((MAX_SUBS + 1024)))
NRUNS=$(wc -w <<<"$SUBSCRIBERS")
bench_scratch $((NRUNS * (BENCH_SECONDS + WARMUP + 70) + MAX_SUBS / 100 + 120))

RULES_JSON=$(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync("config/ecommerce.json")).rules || []))')

RUNS=()
for n in $SUBSCRIBERS; do
  name=events-$n
  if [ $((n + 1024)) -gt "$FD_LIMIT" ]; then say "$name: skipped (file descriptor limit $FD_LIMIT)"; ALL_OK=0; continue; fi
  cat >"$WORK/$name.json" <<EOF
{ "name": "rules-bench", "http": { "maxConnections": $((n + 1000)) },
  "shutdown": { "gracePeriodMs": 500 },
  "rules": $RULES_JSON }
EOF
  start_shopd "$name" "$WORK/$name.json"
  run_rtload "$name" $((60 + n / 100)) --mode events --subscribers "$n" --rate "$RATE" \
    --seconds "$BENCH_SECONDS" --warmup "$WARMUP" --pattern 'order.*' --topic order.placed --rx-timestamps
  stop_shopd "$SHOPD_PID"
  RUNS+=("$name")
done

# ---- report ---------------------------------------------------------------------------

report_header "Rules event fan-out"
echo "| rules.subscribe order.*, rules.emit order.placed at $RATE/s, ${BENCH_SECONDS} s | pushes received / expected | push p50 / p99 / max, read by rtload | p50 / p99 / max, arrival in the client's kernel | server CPU/push (kernel share) | server CPU | emit round trip p50 / p99 | server waiting for a CPU | generator CPU/push |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${RUNS[@]}"; do
  [ -n "${RES[$s]:-}" ] || continue
  printf '| %s subscribers | %s / %s | %s / %s / %s µs | %s / %s / %s µs | %s µs (%s %%) | %s %% of a core | %s / %s µs | %s %% of the time | %s µs |\n' \
    "$(f "$s" subscribers)" "$(f "$s" pushes)" "$(f "$s" expected)" "$(f "$s" push_p50_us)" "$(f "$s" push_p99_us)" \
    "$(f "$s" push_max_us)" "$(f "$s" rx_p50_us)" "$(f "$s" rx_p99_us)" "$(f "$s" rx_max_us)" \
    "$(f "$s" server_cpu_us_per_push)" "$(f "$s" server_sys_pct)" \
    "$(awk -v c="$(f "$s" server_cpu_s)" -v w="$(f "$s" window_s)" 'BEGIN { if (w > 0) printf "%.0f", c / w * 100; else print "n/a" }')" \
    "$(f "$s" update_p50_us)" "$(f "$s" update_p99_us)" "$(f "$s" server_runq_wait_pct)" "$(f "$s" gen_cpu_us_per_push)"
done
echo
if [ -n "${RES[events-1000]:-}" ]; then
  s=events-1000
  echo "| target (1 000 subscribers, 100 events/s) | measured | |"
  echo "|---|---:|---|"
  if [ "$RATE" = 100 ]; then
    echo "| push p99 ≤ 3 ms (read by rtload) | $(f $s push_p99_us) µs | $(verdict "$(f $s push_p99_us)" '<=' 3000) |"
    echo "| push p99 ≤ 3 ms (arrival in the client's kernel) | $(f $s rx_p99_us) µs | $(verdict "$(f $s rx_p99_us)" '<=' 3000) |"
    echo "| server CPU ≤ 2 µs per push | $(f $s server_cpu_us_per_push) µs | $(verdict "$(f $s server_cpu_us_per_push)" '<=' 2) |"
    echo "| every push delivered | $(f $s pushes) / $(f $s expected) | $(verdict "$(f $s pushes)" '==' "$(f $s expected)") |"
  else
    echo "| (targets are for 100 events/s; this run used $RATE) | | n/a |"
  fi
  echo
fi
report_commands "${RUNS[@]}"
print_profiles "${RUNS[@]}"

[ "$ALL_OK" = 1 ] || { say "some runs were incomplete (see above)"; exit 1; }
say "done"
