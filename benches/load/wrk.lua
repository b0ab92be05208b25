-- wrk script of the load harness (benches/load/run.sh).
--
--   wrk ... -s benches/load/wrk.lua URL -- KIND PREFIX TOKEN
--
-- KIND "get": wrk's own static request (no request() function, so wrk does not call Lua per
-- request). KIND "cc": POST /v2/service_instances with `Authorization: bearer TOKEN`. KIND
-- "v1": POST /gateway/v1/configurations with `X-VCAP-Service-Token: TOKEN`. Both POST kinds
-- give every request a unique instance name, PREFIX-<thread>-<counter>, built with
-- wrk.format. done() prints one machine-readable RESULT line (latencies in microseconds).

local PLAN = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17"
local SPACE = "f24c6904-30e0-4559-9523-06d2d93f0c9c"
local ORG = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e"

local threads = {}
local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

local kind, prefix, token
local counter = 0
local cc_headers, v1_headers

function init(args)
   kind = args[1] or "get"
   prefix = (args[2] or "load") .. "-" .. tostring(tid or 0)
   token = args[3] or ""
   cc_headers = {
      ["Authorization"] = "bearer " .. token,
      ["Content-Type"] = "application/json",
   }
   v1_headers = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json",
      ["X-VCAP-Service-Token"] = token,
   }
   if kind == "get" then
      -- Keep wrk's fast path: a static request, no Lua per request.
      request = nil
   end
end

function request()
   counter = counter + 1
   local name = prefix .. "-" .. counter
   if kind == "cc" then
      local body = '{"space_guid":"' .. SPACE .. '","name":"' .. name ..
         '","service_plan_guid":"' .. PLAN .. '"}'
      return wrk.format("POST", "/v2/service_instances", cc_headers, body)
   end
   local body = '{"label":"echo-1.0","email":"email-148@somedomain.com","plan":"free",' ..
      '"version":"1.0","provider":"core","space_guid":"' .. SPACE ..
      '","organization_guid":"' .. ORG .. '","unique_id":"echo-free","name":"' .. name .. '"}'
   v1_headers["X-VCAP-Request-ID"] = name
   return wrk.format("POST", "/gateway/v1/configurations", v1_headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
