-- wrk script for tools/bench/cdn: prints one machine-readable line the bench script reads:
--   GN_RESULT <requests> <duration µs> <p50 µs> <p99 µs> <non-2xx> <socket errors> <bytes>

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("GN_RESULT %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    summary.bytes))
end
