-- wrk script for bench/verify: each request presents the next token of
-- $TOKENS_FILE (one per line, cycled) to GET /v1/authorize, as the header
-- named by $AUTH_HEADER ("authorization" sends "Bearer <token>").
-- At the end it prints one JSON line with what was measured.

local tokens = {}
local header = os.getenv("AUTH_HEADER") or "authorization"
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end

local counter = 0
local statuses = {}
local thread_list = {}

function setup(thread)
  thread:set("id", #thread_list)
  table.insert(thread_list, thread)
end

function init(args)
  counter = id * 7919 -- threads start at different places in the list
  codes = {}
end

function request()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  local headers = {}
  if header == "authorization" then
    headers["Authorization"] = "Bearer " .. token
  else
    headers[header] = token
  end
  return wrk.format("GET", wrk.path, headers)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(thread_list) do
    local c = thread:get("codes")
    for status, n in pairs(c) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d,"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
