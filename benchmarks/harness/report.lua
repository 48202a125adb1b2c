-- wrk script: sends one request shape and prints the run's figures as one JSON line.
--
-- BENCH_METHOD (default GET) and BENCH_BODY come from the environment. "{n}" in
-- the body becomes a counter of this wrk thread's requests, so that inserts into a
-- column with a unique constraint never collide.

local QUANTILES = 1000
local body = os.getenv("BENCH_BODY")
wrk.method = os.getenv("BENCH_METHOD") or "GET"

if body then
  wrk.headers["Content-Type"] = "application/json"
  local counter = 0
  request = function()
    counter = counter + 1
    return wrk.format(nil, nil, nil, (body:gsub("{n}", tostring(counter))))
  end
end

done = function(summary, latency, requests)
  -- The latency at every tenth of a percent of the requests, so that the harness
  -- can merge several runs, each point standing for a thousandth of its run's
  -- requests, before it takes their percentiles.
  local quantiles = {}
  for step = 1, QUANTILES do
    quantiles[step] = string.format("%d", latency:percentile(step * 100 / QUANTILES))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"quantiles": [%s]}\n',
    summary.requests, summary.duration,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    table.concat(quantiles, ", ")
  ))
end
