#!/usr/bin/env bash
# Prints the medians and ratios behind docs/performance.md from raw
# `go test -bench` output (one or more files, -count runs of each
# benchmark). Median of ns/op per benchmark (GOMAXPROCS suffix dropped),
# and of the egress and revoke benchmarks' own metrics (keyed NAME:UNIT);
# ratios are of medians. Usage: scripts/bench-ratios.sh FILE...
set -euo pipefail

awk '/^Benchmark/ && $4 == "ns/op" {
    n = $1; sub(/-[0-9]+$/, "", n); print n, $3
    if (n ~ /^Benchmark(Egress|RevokeAll|VaultRevoke|StartSessionProxy)/) for (i = 5; i < NF; i += 2) if ($(i + 1) !~ /^(MB\/s|B\/op|allocs\/op)$/) print n ":" $(i + 1), $i
  }' "$@" |
  sort -k1,1 -k2,2n |
  awk '
    function flush() { if (name != "") { med[name] = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2; runs[name] = c } }
    $1 != name { flush(); name = $1; c = 0 }
    { v[++c] = $2 }
    END {
      flush()
      printf "%-62s %6s %14s\n", "benchmark", "runs", "median"
      for (k in med) printf "%-62s %6d %14s\n", k, runs[k], fmtk(k, med[k]) | "sort"
      close("sort")
      print ""
      ratio("AWS-only session start, whole command: credbroker / aws-vault",
        "BenchmarkAWSSessionStart/credbroker-session-start", "BenchmarkAWSSessionStart/aws-vault-exec")
      a = "BenchmarkAWSSessionStart/credbroker-session-start"; av = "BenchmarkAWSSessionStart/aws-vault-exec"
      pr = "BenchmarkAWSSessionStart/assumerole-via-tls-proxy"; dr = "BenchmarkAWSSessionStart/assumerole-direct"
      if ((a in med) && (av in med) && (pr in med) && (dr in med)) {
        med["aws-vault-minus-hop"] = med[av] - (med[pr] - med[dr])
        ratio("  the same, aws-vault without the proxy hop", a, "aws-vault-minus-hop")
      }
      ratio("AWS-only session start, in the broker (no CLI, no end) / aws-vault exec",
        "BenchmarkSessionVsDirect/broker/agent-s3", "BenchmarkAWSSessionStart/aws-vault-exec")
      diff("aws-vault baseline: what the STS proxy hop adds per run",
        "BenchmarkAWSSessionStart/assumerole-via-tls-proxy", "BenchmarkAWSSessionStart/assumerole-direct")
      slowest = ""; s = 0
      split("vault aws kube", p, " ")
      for (i in p) { k = "BenchmarkSessionVsDirect/direct/" p[i]; if ((k in med) && med[k] > s) { s = med[k]; slowest = k } }
      if (slowest != "") ratio("Vault+AWS+Kube session / slowest direct provider call (" substr(slowest, 32) ")",
        "BenchmarkSessionVsDirect/broker/agent-all", slowest)
      ratio("Vault+AWS+Kube session / the three direct calls at once",
        "BenchmarkSessionVsDirect/broker/agent-all", "BenchmarkSessionVsDirect/direct/all-parallel")
      if (slowest != "") ratio("the three direct calls at once / the slowest alone (CPU contention of the servers)",
        "BenchmarkSessionVsDirect/direct/all-parallel", slowest)
      ratio("kube provider calls: client-go default rate limit / unthrottled",
        "BenchmarkSessionVsDirect/direct/kube-default-qps", "BenchmarkSessionVsDirect/direct/kube")
      ratio("credbroker version / vault version", "BenchmarkCLIStartup/credbroker-version", "BenchmarkCLIStartup/vault-version")
      ratio("credbroker version / aws-vault --version", "BenchmarkCLIStartup/credbroker-version", "BenchmarkCLIStartup/aws-vault-version")
      ratio("credbroker exec -- true / aws-vault --version", "BenchmarkCLIStartup/credbroker-exec", "BenchmarkCLIStartup/aws-vault-version")
      ratio("credbroker version / bare exec", "BenchmarkCLIStartup/credbroker-version", "BenchmarkCLIStartup/bare-exec")
      ratio("credbroker exec -- true / bare exec", "BenchmarkCLIStartup/credbroker-exec", "BenchmarkCLIStartup/bare-exec")
      ratio("egress: connect + one round trip, through the gateway / direct (loopback)",
        "BenchmarkEgressConnect/gateway", "BenchmarkEgressConnect/direct")
      diff("egress: what the gateway adds to opening a connection (loopback)",
        "BenchmarkEgressConnect/gateway", "BenchmarkEgressConnect/direct")
      ratio("egress: 200 MB download throughput, gateway as a fraction of direct (= direct time / gateway time)",
        "BenchmarkEgressThroughput/direct", "BenchmarkEgressThroughput/gateway")
      t = "BenchmarkEgressTunnels200/"
      ratio("egress: 200 tunnels at once from 10 sessions (open all, 256 KiB down each, close), gateways / direct",
        t "gateway", t "direct")
      ratio("egress: time until all 200 tunnels are open at once, through 10 gateways / 200 direct dials",
        t "gateway:ms-open-all", t "direct:ms-open-all")
      diff("egress: what the gateways add to opening 200 connections at once",
        t "gateway:ms-open-all", t "direct:ms-open-all")
      m = "BenchmarkEgressMemoryPerTunnel:"
      show("egress: daemon heap in use per open idle tunnel (1,000 tunnels, 10 gateways)", m "B-heap/tunnel")
      show("egress: daemon goroutine stacks per open idle tunnel", m "B-stack/tunnel")
      show("egress: daemon VmRSS per open idle tunnel", m "B-rss/tunnel")
      show("egress: daemon goroutines per open idle tunnel", m "goroutines/tunnel")
      ratio("sandbox forwarder: CONNECT tunnel open, via forwarder / straight to the gateway socket",
        "BenchmarkForwarder/connect/via-forwarder", "BenchmarkForwarder/connect/direct-gateway")
      diff("proxy delivery: latency it adds to one HTTPS request (kept-alive, loopback), proxy - files",
        "BenchmarkProxyRequest/proxy", "BenchmarkProxyRequest/files")
      ratio("proxy delivery: 200 MB GET throughput, proxy as a fraction of files (= files time / proxy time)",
        "BenchmarkProxyThroughput/get/files", "BenchmarkProxyThroughput/get/proxy")
      ratio("proxy delivery: 200 MB PUT throughput, proxy as a fraction of files (= files time / proxy time)",
        "BenchmarkProxyThroughput/put/files", "BenchmarkProxyThroughput/put/proxy")
      sp = "BenchmarkStartSessionProxy:"
      ratio("proxy delivery: Vault session start with an egress gateway, proxy / files (interleaved)",
        sp "ms-proxy", sp "ms-files")
      ratio("  the same, a role that also reaches a relayed host (bundle with the system roots) / files",
        sp "ms-proxy-roots", sp "ms-files")
      ra = "BenchmarkRevokeAll/"; vt = "BenchmarkVaultRevoke10000/"
      ratio("revoke --all, 10,000 sessions, until rejected: credbroker / Vault tree revoke (medians)",
        ra "10000:ms-rejected", vt "by-parent:ms-rejected")
      ratio("  the same, until the revoke calls returned",
        ra "10000:ms-returned", vt "by-parent:ms-returned")
      ratio("  the same, whole command (dirs, store) / the Vault tree revoke call",
        ra "10000", vt "by-parent")
      ratio("10,000 tokens until rejected: Vault, 4 trees of 2,500 at once / one tree of 10,000",
        vt "by-4-parents:ms-rejected", vt "by-parent:ms-rejected")
      ratio("revoke --all until Vault rejects the tokens: t(10,000) / t(100)", ra "10000:ms-rejected", ra "100:ms-rejected")
      ratio("revoke --all until the revoke calls returned: t(10,000) / t(100)", ra "10000:ms-returned", ra "100:ms-returned")
      ratio("revoke --all whole command: t(10,000) / t(100)", ra "10000", ra "100")
      ratio("10,000 tokens until rejected: Vault one by one (8 in flight) / credbroker revoke --all",
        vt "one-by-one:ms-rejected", ra "10000:ms-rejected")
      mx = "BenchmarkRevokeAllMixed/1000:"
      show("revoke --all, 1,000 Vault+AWS (MinIO) sessions: provider calls returned", mx "ms-returned")
      show("  until Vault rejects the session tokens", mx "ms-rejected-vault")
      show("  until MinIO rejects the session keys", mx "ms-rejected-aws")
    }
    function fmt(ns) {
      if (ns >= 1e9) return sprintf("%.2f s", ns / 1e9)
      if (ns >= 1e6) return sprintf("%.2f ms", ns / 1e6)
      return sprintf("%.1f µs", ns / 1e3)
    }
    function fmtk(k, v) { # NAME:UNIT keys are metrics in their own unit
      if (index(k, ":")) return sprintf(v >= 100 || v <= -100 ? "%.0f %s" : "%.3g %s", v, substr(k, index(k, ":") + 1))
      return fmt(v)
    }
    function ratio(what, a, b) {
      if ((a in med) && (b in med) && med[b] > 0) printf "%-78s %s / %s = %.2fx\n", what, fmtk(a, med[a]), fmtk(b, med[b]), med[a] / med[b]
    }
    function diff(what, a, b) {
      if ((a in med) && (b in med)) printf "%-78s %s - %s = %s\n", what, fmtk(a, med[a]), fmtk(b, med[b]), fmtk(a, med[a] - med[b])
    }
    function show(what, k) {
      if (k in med) printf "%-78s %s\n", what, fmtk(k, med[k])
    }
  '

# The revoke --all goal pairs each run's credbroker figure with Vault's in
# the same go test (machine load moves both): the ratio per run, and their
# median.
awk '/^goos:/ { run++ }
  function metric(unit,   i) { for (i = 5; i < NF; i += 2) if ($(i + 1) == unit) return $i; return "" }
  /^BenchmarkRevokeAll\/10000-/ { c[run] = metric("ms-rejected") }
  /^BenchmarkVaultRevoke10000\/by-parent-/ { v[run] = metric("ms-rejected") }
  END { for (r in c) if ((r in v) && c[r] != "" && v[r] > 0) printf "%.2f\n", c[r] / v[r] }' "$@" |
  sort -n |
  awk '{ x[++n] = $1; l = l sep $1 "x"; sep = ", " }
    END { if (n) printf "%-78s %s; median %.2fx\n", "revoke --all, 10,000, until rejected, credbroker / Vault tree, per run (goal <= 1.3x)", l, (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }'


# The proxy start goal: each run's interleaved medians, proxy / files, per
# run, and their median.
awk 'function metric(unit,   i) { for (i = 5; i < NF; i += 2) if ($(i + 1) == unit) return $i; return "" }
  /^BenchmarkStartSessionProxy-/ { f = metric("ms-files"); if (f > 0) { p[++n] = metric("ms-proxy") / f; r[n] = metric("ms-proxy-roots") / f } }
  function med(a, n,   i, j, t, b) { for (i = 1; i <= n; i++) b[i] = a[i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
    return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
  function list(a, n,   i, l) { for (i = 1; i <= n; i++) l = l (i > 1 ? ", " : "") sprintf("%.2fx", a[i]); return l }
  END { if (n) {
    printf "%-78s %s; median %.2fx\n", "proxy delivery: session start, proxy / files, per run (goal <= 1.1x)", list(p, n), med(p, n)
    printf "%-78s %s; median %.2fx\n", "  the same, proxy-roots / files, per run", list(r, n), med(r, n) } }' "$@"
