-- wrk script: sends one request shape and prints the run's figures as one JSON line.
--
-- BENCH_METHOD (default GET) and BENCH_BODY come from the environment. A body
-- containing "{n}" gets a per-connection-thread counter there, so that inserts
-- into a column with a unique constraint never collide.

local body = os.getenv("BENCH_BODY")
wrk.method = os.getenv("BENCH_METHOD") or "GET"

if body then
  wrk.headers["Content-Type"] = "application/json"
  if body:find("{n}", 1, true) then
    local counter = 0
    request = function()
      counter = counter + 1
      return wrk.format(nil, nil, nil, (body:gsub("{n}", tostring(counter))))
    end
  else
    wrk.body = body
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end
