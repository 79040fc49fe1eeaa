#!/usr/bin/env bash
# Auth overhead of shopd, driven by bench/rtload.c --mode get:
#
#   Two servers with the same buckets and seed (store-bench.sh's) run side by side:
#   "off" without an `auth` section, "on" with auth required, a static token table and
#   a 10-rule permission policy (default deny) whose matching rule is the last one —
#   nine rules for other roles, or for role "bench" with other operations or buckets,
#   and finally {role: "bench", allow: ["store.get"], buckets: ["products"]}. Against
#   "on", every rtload connection logs in with auth.login (token bench-token) and waits
#   for its result before the load starts. The get load (BENCH_CONNS × BENCH_INFLIGHT
#   store.get of prod-1) runs against off and on alternately: BENCH_AUTH_ROUNDS rounds,
#   each an off run and an on run of BENCH_AUTH_SECONDS, in the order off, on | on, off
#   | off, on | … (slow drift of the machine cancels); the idle server uses no CPU
#   meanwhile. Printed: server CPU per store.get for every run, the on / off ratio of
#   every round, their median (the figure checked against the target ≤ 1.10: one
#   round hit by other work on the machine does not decide it) and the ratio of the
#   totals over all runs.
#
# Scratch files go to build/bench/auth-bench.*; servers are stopped on exit.
#
# Environment: BENCH_SECONDS (10), BENCH_AUTH_SECONDS (BENCH_SECONDS / 2, at least 1),
# BENCH_AUTH_ROUNDS (4), BENCH_WARMUP_SECONDS (2), BENCH_CONNS (64), BENCH_INFLIGHT (16),
# SHOPD_BIN (build/shopd), BENCH_KEEP=1, BENCH_PIN=1 (shopd and rtload on separate
# CPUs), BENCH_PROFILE=1 (perf record of the server during every measured window).
set -euo pipefail

BENCH_NAME=auth-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_common_env
CONNS=${BENCH_CONNS:-64}
INFLIGHT=${BENCH_INFLIGHT:-16}
ROUNDS=${BENCH_AUTH_ROUNDS:-4}
half=$((BENCH_SECONDS / 2))
BENCH_SECONDS=${BENCH_AUTH_SECONDS:-$((half > 0 ? half : 1))} # per run, from here on
need_whole BENCH_CONNS "$CONNS" 1
need_whole BENCH_INFLIGHT "$INFLIGHT" 1
need_whole BENCH_AUTH_ROUNDS "$ROUNDS" 1
need_whole BENCH_AUTH_SECONDS "$BENCH_SECONDS" 1
bench_build
raise_fds $((CONNS + 1024)) >/dev/null
bench_scratch $((2 * ROUNDS * (BENCH_SECONDS + WARMUP + 20) + 120))

# ---- the two servers ------------------------------------------------------------------

AUTH_JSON=',
  "auth": {
    "required": true,
    "tokens": {
      "bench-token": { "userId": "bench-user", "roles": ["bench"] },
      "admin-token": { "userId": "admin-1", "roles": ["admin"] },
      "customer-token": { "userId": "user-1", "roles": ["customer"] } },
    "permissions": {
      "default": "deny",
      "rules": [
        { "role": "admin", "allow": "*" },
        { "role": "customer", "allow": ["store.get", "store.all", "store.where", "store.findOne"],
          "buckets": ["products"] },
        { "role": "customer", "allow": ["store.get", "store.where"], "buckets": ["orders"], "owner": "userId" },
        { "role": "customer", "allow": "store.subscribe", "buckets": ["bench-product"] },
        { "role": "support", "allow": ["store.get", "store.where", "store.count"], "buckets": ["orders", "audit-logs"] },
        { "role": "bench", "allow": "store.insert", "buckets": ["audit-logs"] },
        { "role": "bench", "allow": ["store.update", "store.delete"], "buckets": ["products"] },
        { "role": "bench", "allow": "store.get", "buckets": ["orders", "audit-logs"] },
        { "role": "bench", "allow": ["rules.emit", "rules.subscribe"], "topics": ["bench.*"] },
        { "role": "bench", "allow": ["store.get"], "buckets": ["products"] } ] } }'

write_store_config "$WORK/off.json" $((CONNS + 1000)) ""
write_store_config "$WORK/on.json" $((CONNS + 1000)) "$AUTH_JSON"
RULES=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).auth.permissions.rules.length)' "$WORK/on.json")
[ "$RULES" = 10 ] || die "the policy has $RULES rules, not 10"

start_shopd off "$WORK/off.json"
OFF_PID=$SHOPD_PID OFF_PORT=$SHOPD_PORT
start_shopd on "$WORK/on.json"
ON_PID=$SHOPD_PID ON_PORT=$SHOPD_PORT

# The policy must allow the bench read and refuse what no rule allows (store.all).
check_policy() {
  node - "$ON_PORT" <<'EOF' || die "the policy check failed"
const [port] = process.argv.slice(2);
const ws = new (require(require("path").resolve("node_modules/ws")))(`ws://127.0.0.1:${port}/`);
const want = { 1: "result", 2: "result", 3: "error" }; let got = 0;
const t = setTimeout(() => { console.error("policy check: timeout"); process.exit(1); }, 5000);
ws.on("message", (m) => {
  const o = JSON.parse(m);
  if (o.type === "welcome") {
    ws.send(JSON.stringify({ id: 1, type: "auth.login", token: "bench-token" }));
    ws.send(JSON.stringify({ id: 2, type: "store.get", bucket: "products", key: "prod-1" }));
    ws.send(JSON.stringify({ id: 3, type: "store.all", bucket: "products" }));
    return;
  }
  if (!(o.id in want)) return;
  if (o.type !== want[o.id] || (o.id === 3 && o.code !== "FORBIDDEN")) {
    console.error("policy check: request " + o.id + " answered " + JSON.stringify(o)); process.exit(1);
  }
  if (++got === 3) { clearTimeout(t); ws.close(); }
});
EOF
}
if [ -f node_modules/ws/package.json ]; then check_policy; else say "node_modules/ws missing: policy check skipped"; fi

# ---- runs -------------------------------------------------------------------------------

GET=(--mode get --conns "$CONNS" --inflight "$INFLIGHT" --seconds "$BENCH_SECONDS" --warmup "$WARMUP"
  --bucket products --key prod-1)
RUNS=()
run_kind() { # off|on, round
  local name=$1-$2
  if [ "$1" = off ]; then SHOPD_PID=$OFF_PID SHOPD_PORT=$OFF_PORT; else SHOPD_PID=$ON_PID SHOPD_PORT=$ON_PORT; fi
  if [ "$1" = off ]; then run_rtload "$name" 30 "${GET[@]}"; else run_rtload "$name" 30 "${GET[@]}" --token bench-token; fi
  RUNS+=("$name")
}
for ((r = 1; r <= ROUNDS; r++)); do
  if [ $((r % 2)) = 1 ]; then run_kind off "$r"; run_kind on "$r"; else run_kind on "$r"; run_kind off "$r"; fi
done
stop_shopd "$OFF_PID"
stop_shopd "$ON_PID"

# ---- report ---------------------------------------------------------------------------

sum_kind() { # off|on → "cpu_s ops"
  local s cpu=0 ops=0
  for s in "${RUNS[@]}"; do
    [[ $s == "$1"-* ]] || continue
    [ -n "${RES[$s]:-}" ] || continue
    cpu=$(awk -v a="$cpu" -v b="$(f "$s" server_cpu_s)" 'BEGIN { print a + b }')
    ops=$((ops + $(f "$s" ops)))
  done
  echo "$cpu $ops"
}
read -r OFF_CPU OFF_OPS < <(sum_kind off)
read -r ON_CPU ON_OPS < <(sum_kind on)
per() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0 && c > 0) printf "%.3f", c * 1e6 / n; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) print "n/a"; else if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
OFF_PER=$(per "$OFF_CPU" "$OFF_OPS")
ON_PER=$(per "$ON_CPU" "$ON_OPS")
TOTAL_RATIO=$(ratio "$ON_PER" "$OFF_PER")
ROUND_RATIOS=()
for ((r = 1; r <= ROUNDS; r++)); do
  ROUND_RATIOS+=("$(ratio "$(f "on-$r" server_cpu_us_per_op)" "$(f "off-$r" server_cpu_us_per_op)")")
done
kind_values() { # off|on: the runs' server CPU per op, one a line
  local s
  for s in "${RUNS[@]}"; do if [[ $s == "$1"-* ]]; then f "$s" server_cpu_us_per_op; fi; done
}
OFF_MED=$(kind_values off | median)
ON_MED=$(kind_values on | median)
RATIO=$(echo "${ROUND_RATIOS[*]}" | median)

report_header "Auth overhead"
echo "Same buckets and seed on both servers; \"on\": auth required, static token, 10-rule policy"
echo "(default deny, the matching rule last); each connection logged in before the load."
echo
echo "| store.get, $CONNS conns × $INFLIGHT in flight, ${BENCH_SECONDS} s per run | auth | ops/s | p50 | p99 | server CPU/op | server CPU (kernel share) | server waiting for a CPU | errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for s in "${RUNS[@]}"; do
  [ -n "${RES[$s]:-}" ] || continue
  if [[ $s == off-* ]]; then a="off"; else a="on (10 rules)"; fi
  printf '| run %s | %s | %s | %s µs | %s µs | %s µs | %s %% of a core (%s %%) | %s %% | %s |\n' "$s" "$a" \
    "$(f "$s" ops_per_s)" "$(f "$s" lat_p50_us)" "$(f "$s" lat_p99_us)" "$(f "$s" server_cpu_us_per_op)" \
    "$(f "$s" server_cpu_pct)" "$(f "$s" server_sys_pct)" "$(f "$s" server_runq_wait_pct)" "$(f "$s" errors)"
done
echo
echo "| server CPU per store.get | auth off | auth on | on / off |"
echo "|---|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "| round $r | $(f "off-$r" server_cpu_us_per_op) µs | $(f "on-$r" server_cpu_us_per_op) µs | ${ROUND_RATIOS[$((r - 1))]} |"
done
echo "| median of the runs / **median of the rounds' ratios** | $OFF_MED µs | $ON_MED µs | **$RATIO** |"
echo "| all runs together (CPU s / ops) | $OFF_PER µs | $ON_PER µs | $TOTAL_RATIO |"
echo
echo "| target | measured | |"
echo "|---|---:|---|"
echo "| auth + 10-rule policy costs ≤ 10 % more server CPU per request (median round) | $RATIO × | $(verdict "$RATIO" '<=' 1.10) |"
echo
report_commands "${RUNS[@]}"
print_profiles "${RUNS[@]}"

[ "$ALL_OK" = 1 ] || { say "some runs were incomplete (see above)"; exit 1; }
say "done"
