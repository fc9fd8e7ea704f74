-- wrk script for tools/bench/auth-me: sends the bearer token from $GENERIA_BENCH_TOKEN on
-- every request (nginx gets the same header, so both servers parse the same bytes) and prints
-- one machine-readable line the bench script reads:
--   GN_RESULT <requests> <duration µs> <p50 µs> <p99 µs> <non-2xx> <socket errors>

local token = os.getenv("GENERIA_BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("GN_RESULT %d %d %d %d %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
