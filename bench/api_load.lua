-- wrk script of bench/api_load.py: POST /v1/users/{id}/score at a fixed request rate.
--
--   wrk -t T -c C -d S --latency -s bench/api_load.lua URL -- REQUESTS_FILE RATE
--
-- REQUESTS_FILE: one request a line, "<path>\t<JSON body>" (api_load.py writes it: users known
-- to have state, 100 candidates from the synthetic data each); requests rotate over the lines.
-- RATE: requests per second over all threads. wrk is closed-loop (each connection sends its
-- next request when the last one is answered); delay() makes it paced: each thread keeps a
-- schedule of one request every T / RATE seconds, and a connection that is ready waits for the
-- next free slot. With enough connections the achieved rate is RATE; when the server is slower
-- the connections send back to back, the achieved rate falls below RATE and api_load.py says
-- so. Latency is wrk's, from a request's first byte written to its response's last byte read
-- (time waiting for a slot is not in it). done() prints one line "WRK_JSON {...}" with the
-- figures api_load.py reads, p99.9 included (wrk --latency prints up to p99).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } api_load_timespec;
int clock_gettime(int clk_id, api_load_timespec *tp);
]]
local timespec = ffi.new("api_load_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

-- Per thread (each wrk thread runs this script in its own Lua state).
local requests = {}
local next_request = 0
local interval_ms = 0
local next_slot = nil
non200 = 0
unknown_users = 0
behind_resets = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  for line in file:lines() do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      table.insert(requests, wrk.format("POST", path,
        { ["Content-Type"] = "application/json" }, body))
    end
  end
  file:close()
  assert(#requests > 0, "no requests in " .. args[1])
  local rate = tonumber(args[2])
  local thread_total = tonumber(args[3]) or 1
  interval_ms = 1000 * thread_total / rate
  -- Threads start their rotation at different lines.
  next_request = (id or 0) * 997 % #requests
end

function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now - 1000 then
    -- First request, or more than a second behind: start the schedule again from now rather
    -- than sending a second's worth back to back.
    if next_slot ~= nil then
      behind_resets = behind_resets + 1
    end
    next_slot = now
  end
  local slot = next_slot
  next_slot = next_slot + interval_ms
  local wait = slot - now
  if wait < 0 then
    return 0
  end
  return wait
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not body:find('"known":true', 1, true) then
    unknown_users = unknown_users + 1
  end
end

function done(summary, latency, requests_stats)
  local n200, unknown, resets = 0, 0, 0
  for _, thread in ipairs(threads) do
    n200 = n200 + (thread:get("non200") or 0)
    unknown = unknown + (thread:get("unknown_users") or 0)
    resets = resets + (thread:get("behind_resets") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},' ..
    '"non200":%d,"unknown_users":%d,"schedule_resets":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    n200, unknown, resets))
end
