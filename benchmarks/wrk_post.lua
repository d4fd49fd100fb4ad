-- POST one body file to every request; print a JSON summary line at the end.
-- usage: wrk ... -s wrk_post.lua URL -- BODY_FILE CONTENT_TYPE [AUTH_HEADER_VALUE]
local body_file, content_type, auth

function init(args)
  body_file = args[1]
  content_type = args[2] or "application/json"
  auth = args[3]
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = content_type
  if auth and auth ~= "" then
    wrk.headers["Authorization"] = auth
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
