#!/usr/bin/env bash
# Checkout throughput of shopd, driven by bench/rtload.c:
#
#   checkout       BENCH_CONNS (64) connections, each logged in as its own customer
#                  (token bench-token-<i> → user bench-<i>), keep BENCH_CHECKOUT_INFLIGHT
#                  (4) procedures.call {name: "checkout", input: {walletCurrency: "USD",
#                  items: [{productId, quantity: 1}]}} in flight, cycling through the
#                  USD products prod-1, prod-2, prod-3: checkouts/s, latency, server CPU
#                  per checkout. Target ≥ 13 000 checkouts/s.
#   checkout-idem  the same with a unique idempotencyKey on every call (the path that
#                  hashes the input and stores the answer in the same transaction).
#   tx             for comparison, in the same run: store-bench.sh's plain 3-operation
#                  store.transaction (stock update + order insert + audit insert),
#                  BENCH_CONNS × BENCH_TX_INFLIGHT (16), on a shopd with store-bench's
#                  schema and no auth (the shop's schema and policy refuse that
#                  transaction's records).
#
# The checkout server runs a copy of config/ecommerce.json changed so that the run never
# runs out of stock or money: rateLimit removed; prod-1..3 (USD) with a stock of 10^12;
# BENCH_CONNS users bench-<i> (role customer) with tokens bench-token-<i> and USD
# wallets of 10^13 minor units, each with its topup ledger entry; auth, policy, rules
# and everything else as shipped. Every scenario gets a fresh shopd and data directory
# (SQLite, WAL, synchronous=NORMAL: every answered checkout is committed). Scratch
# files go to build/bench/shop-bench.*; servers are stopped on exit.
#
# Environment: BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_CONNS (64),
# BENCH_CHECKOUT_INFLIGHT (4), BENCH_TX_INFLIGHT (16), BENCH_SHOP_SCENARIOS
# ("checkout checkout-idem tx"), SHOPD_BIN (build/shopd), BENCH_KEEP=1,
# BENCH_PROFILE=1 (perf record of the server during every measured window).
set -euo pipefail

BENCH_NAME=shop-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_common_env
CONNS=${BENCH_CONNS:-64}
CO_INFLIGHT=${BENCH_CHECKOUT_INFLIGHT:-4}
TX_INFLIGHT=${BENCH_TX_INFLIGHT:-16}
SCENARIOS=${BENCH_SHOP_SCENARIOS:-checkout checkout-idem tx}
need_whole BENCH_CONNS "$CONNS" 1
need_whole BENCH_CHECKOUT_INFLIGHT "$CO_INFLIGHT" 1
need_whole BENCH_TX_INFLIGHT "$TX_INFLIGHT" 1
for s in $SCENARIOS; do
  case $s in checkout | checkout-idem | tx) ;; *) die "unknown scenario '$s' in BENCH_SHOP_SCENARIOS" ;; esac
done
bench_build
raise_fds $((CONNS + 1024)) >/dev/null
bench_scratch $(($(wc -w <<<"$SCENARIOS") * (BENCH_SECONDS + WARMUP + 60) + 120))

PRODUCTS=prod-1,prod-2,prod-3

# ---- configs --------------------------------------------------------------------------

node - config/ecommerce.json "$WORK/shop.json" "$CONNS" $((CONNS + 1000)) "$PRODUCTS" <<'EOF' || die "could not write the shop config"
const fs = require("fs");
const [src, out, users, maxConn, products] = process.argv.slice(2);
const c = JSON.parse(fs.readFileSync(src, "utf8"));
delete c.rateLimit;
c.name = "shop-bench";
c.http = Object.assign({}, c.http, { maxConnections: Number(maxConn) });
c.shutdown = Object.assign({}, c.shutdown, { gracePeriodMs: 500 });
const seed = c.seed, tokens = c.auth.tokens;
for (const id of products.split(",")) {
  const p = seed.products.find((x) => x.id === id);
  if (!p || p.currency !== "USD" || !p.active) throw new Error(`product ${id} is not an active USD product`);
  p.stock = 1e12;
}
const BAL = 1e13, T0 = 1706745600000;
for (let i = 0; i < Number(users); i++) {
  const u = `bench-${i}`, w = `${u}:USD`;
  tokens[`bench-token-${i}`] = { userId: u, roles: ["customer"] };
  seed.users.push({ id: u, name: `Bench ${i}`, email: `${u}@example.com`, role: "customer" });
  seed.wallets.push({ id: w, userId: u, currency: "USD", balanceMinor: BAL });
  seed.ledger.push({ id: `seed-topup-${u}-usd`, walletId: w, userId: u, currency: "USD", amountMinor: BAL,
                     balanceAfterMinor: BAL, kind: "topup", createdAt: T0 });
}
fs.writeFileSync(out, JSON.stringify(c, null, 1));
EOF
write_store_config "$WORK/tx.json" $((CONNS + 1000)) ""

# One checkout by hand first: the config must accept it (catches seed or policy drift
# before a whole run of errors).
probe_checkout() { # port
  node - "$1" <<'EOF' || die "the probe checkout failed"
const [port] = process.argv.slice(2);
const ws = new (require(require("path").resolve("node_modules/ws")))(`ws://127.0.0.1:${port}/`);
const t = setTimeout(() => { console.error("probe: timeout"); process.exit(1); }, 5000);
ws.on("message", (m) => {
  const o = JSON.parse(m);
  if (o.type === "welcome") {
    ws.send(JSON.stringify({ id: 1, type: "auth.login", token: "bench-token-0" }));
    ws.send(JSON.stringify({ id: 2, type: "procedures.call", name: "checkout",
      input: { walletCurrency: "USD", items: [{ productId: "prod-1", quantity: 1 }] } }));
    return;
  }
  if (o.id === 1 && o.type !== "result") { console.error("probe: login: " + JSON.stringify(o)); process.exit(1); }
  if (o.id === 2) {
    if (o.type !== "result" || o.data.status !== "paid") { console.error("probe: checkout: " + JSON.stringify(o)); process.exit(1); }
    clearTimeout(t); ws.close();
  }
});
EOF
}

# ---- runs -------------------------------------------------------------------------------

COMMON=(--conns "$CONNS" --seconds "$BENCH_SECONDS" --warmup "$WARMUP")
RUNS=()
for s in $SCENARIOS; do
  case $s in
  checkout | checkout-idem)
    start_shopd "$s" "$WORK/shop.json"
    if [ -f node_modules/ws/package.json ]; then probe_checkout "$SHOPD_PORT"; fi
    extra=()
    [ "$s" = checkout-idem ] && extra=(--idempotency)
    run_rtload "$s" 30 --mode checkout "${COMMON[@]}" --inflight "$CO_INFLIGHT" --token 'bench-token-{i}' \
      --token-users "$CONNS" --products "$PRODUCTS" --wallet-currency USD "${extra[@]}"
    ;;
  tx)
    start_shopd tx "$WORK/tx.json"
    run_rtload tx 30 --mode tx "${COMMON[@]}" --inflight "$TX_INFLIGHT" --bucket products --key prod-1 \
      --orders-bucket orders --audit-bucket audit-logs
    ;;
  esac
  stop_shopd "$SHOPD_PID"
  RUNS+=("$s")
done

# ---- report ---------------------------------------------------------------------------

report_header "Checkout throughput"
echo "Checkout server: config/ecommerce.json with auth, policy and rules as shipped, rateLimit removed,"
echo "$CONNS bench customers with large USD wallets, prod-1..3 with a stock of 10^12; every answered"
echo "checkout is a committed SQLite (WAL) transaction. tx: store-bench.sh's schema, no auth."
echo
echo "| $CONNS conns, ${BENCH_SECONDS} s | in flight | ops/s | p50 | p99 | max | server CPU/op | server CPU (kernel share) | server waiting for a CPU | generator CPU/op | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${RUNS[@]}"; do
  [ -n "${RES[$s]:-}" ] || continue
  case $s in
  checkout) title="checkout (procedures.call, 1 line, no idempotency key)" ;;
  checkout-idem) title="checkout with a unique idempotencyKey" ;;
  tx) title="store.transaction (update + 2 inserts)" ;;
  esac
  printf '| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s %% of a core (%s %%) | %s %% of the time | %s µs | %s |\n' "$title" \
    "$(f "$s" inflight)" "$(f "$s" ops_per_s)" "$(f "$s" lat_p50_us)" "$(f "$s" lat_p99_us)" "$(f "$s" lat_max_us)" \
    "$(f "$s" server_cpu_us_per_op)" "$(f "$s" server_cpu_pct)" "$(f "$s" server_sys_pct)" \
    "$(f "$s" server_runq_wait_pct)" "$(f "$s" gen_cpu_us_per_op)" "$(f "$s" errors)"
done
echo
if [ -n "${RES[checkout]:-}" ] && [ -n "${RES[tx]:-}" ]; then
  echo "Server CPU per checkout / per 3-operation transaction: $(awk -v a="$(f checkout server_cpu_us_per_op)" \
    -v b="$(f tx server_cpu_us_per_op)" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }') ×."
  echo
fi
echo "| target | measured | |"
echo "|---|---:|---|"
[ -n "${RES[checkout]:-}" ] &&
  echo "| ≥ 13 000 durable checkouts/s, $CONNS connections | $(f checkout ops_per_s) | $(verdict "$(f checkout ops_per_s)" '>=' 13000) |"
[ -n "${RES[checkout-idem]:-}" ] &&
  echo "| (same, with idempotency keys) | $(f checkout-idem ops_per_s) | $(verdict "$(f checkout-idem ops_per_s)" '>=' 13000) |"
echo
report_commands "${RUNS[@]}"
print_profiles "${RUNS[@]}"

[ "$ALL_OK" = 1 ] || { say "some runs were incomplete (see above)"; exit 1; }
say "done"
