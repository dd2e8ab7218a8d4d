#!/usr/bin/env bash
# Runs every benchmark behind docs/performance.md in one go, on local real
# servers (Vault, MinIO, kube-apiserver + etcd, aws-vault as a baseline),
# and writes into OUT (default .cache/bench): the raw `go test -bench`
# output per group, a benchstat summary per group (medians over -count
# runs), and ratios.txt (scripts/bench-ratios.sh). Called by `make bench`;
# BENCHSTAT names the benchstat binary, COUNT the runs of the fast groups.
set -euo pipefail

OUT=${1:-.cache/bench}
COUNT=${COUNT:-10}
BENCHSTAT=${BENCHSTAT:-benchstat}
GO=${GO:-go}
rm -rf "$OUT"
mkdir -p "$OUT"

scripts/build-aws-vault.sh >/dev/null

run() { # name package args...
  local name=$1 pkg=$2
  shift 2
  echo "== $name ($pkg $*)" >&2
  "$GO" test -run '^$' "$@" "$pkg" | tee -a "$OUT/$name.txt"
}

run cli ./cmd/credbroker/ -bench '^Benchmark(AWSSessionStart|CLIStartup)$' -count="$COUNT" -timeout 60m
run session-vs-direct ./broker/ -bench '^BenchmarkSessionVsDirect$' -count="$COUNT" -timeout 60m
run broker-lifecycle ./broker/ -bench '^Benchmark(StartSession|EndSession)$' -benchmem -benchtime=200x -count=5 -timeout 30m
run memory ./cmd/credbroker/ -bench '^BenchmarkDaemonMemory10000$' -benchtime=1x -timeout 30m
# Three runs, each credbroker's and Vault's own revocation side by side in
# one go test (the medians of the three are what ratios.txt compares).
for _ in 1 2 3; do
  run revoke-all ./broker/ -bench '^Benchmark(RevokeAll|RevokeAllMixed|VaultRevoke10000)$' -benchtime=1x -timeout 60m
done
run fleet ./cmd/credbroker/ -bench '^BenchmarkFleetRevokeAll$' -benchtime=1x -timeout 30m
run egress ./broker/egress/ -bench '^BenchmarkEgress(Connect|Throughput|Tunnels200)$' -count="$COUNT"
run egress-memory ./broker/egress/ -bench '^BenchmarkEgressMemoryPerTunnel$' -benchtime=1x -count=3
run proxy ./broker/proxy/ -bench '^BenchmarkProxyRequest$' -count="$COUNT"
run proxy-throughput ./broker/proxy/ -bench '^BenchmarkProxyThroughput$' -benchtime=2x -count=3
run proxy-start ./broker/ -bench '^BenchmarkStartSessionProxy$' -benchtime=200x -count=10 -timeout 30m
run awssig ./broker/proxy/awssig/ -bench '^Benchmark(Resign|ChunkRewriter)$' -benchmem -count="$COUNT"
run building-blocks ./leases/... -bench . -benchmem
run building-blocks-agentenv ./agentenv/... -bench . -benchmem

for f in "$OUT"/*.txt; do
  echo "== $(basename "$f" .txt)"
  "$BENCHSTAT" "$f"
  echo
done >"$OUT/benchstat.md"
scripts/bench-ratios.sh "$OUT"/*.txt | tee "$OUT/ratios.txt"
{ uname -srm; grep -m1 'model name' /proc/cpuinfo; nproc; grep MemTotal /proc/meminfo; "$GO" version; } >"$OUT/machine.txt"
echo "results in $OUT (benchstat.md, ratios.txt, raw *.txt)" >&2
