-- One request shape for wrk (bench/wrk.py): every request is `method path`
-- with, when a body is given, a JSON body whose buyer is distinct per request
-- (tag-thread-counter), as each checkout must be a new buyer (the per-buyer
-- limit is 1). A thread sends at most its share of `cap` requests, so a run
-- never asks for more keys than were imported; done() prints one JSON line.
--
-- Arguments (after --): method path cap threads tag body_before body_after
-- cap 0: no cap. The buyer's name goes between body_before and body_after.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clock, wrk_timespec *now);
int getpid(void);
int kill(int pid, int signal);
]])
local SIGINT = 2
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("wrk_timespec")

local function now()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
   return tonumber(now_ts.tv_sec) + tonumber(now_ts.tv_nsec) / 1e9
end

-- Main state: the thread objects, read back in done().
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads - 1)
end

-- Thread state (globals, so thread:get reads them).
sent, granted, answered, first_sent, last_answer = 0, 0, 0, 0, 0
answers = {}
local method, path, share, tag, before, after, thread_count
-- wrk calls request() once on thread 0's state before the run, only to
-- count pipelined requests: that call is not a request sent.
local verifying

function init(args)
   method, path, tag, before, after = args[1], args[2], args[5], args[6] or "", args[7] or ""
   local cap = tonumber(args[3])
   thread_count = tonumber(args[4])
   -- Thread `id` gets floor(cap / count), the first cap % count one more.
   share = cap > 0 and math.floor(cap / thread_count) + ((id < cap % thread_count) and 1 or 0) or math.huge
   verifying = id == 0
   if share == math.huge then
      delay = nil -- no cap: wrk then sends without a timer per request
   end
end

function request()
   if verifying then
      verifying = false
      return wrk.format(method, path)
   end
   if sent >= share then
      -- Only a connection that wrk reopened after an error can get here
      -- past delay(): it gets the liveness page, which sells nothing.
      return wrk.format("GET", "/healthz")
   end
   if first_sent == 0 then
      first_sent = now()
   end
   sent = sent + 1
   if before == "" then
      return wrk.format(method, path)
   end
   local buyer = tag .. "-" .. id .. "-" .. sent
   return wrk.format(method, path, { ["Content-Type"] = "application/json" }, before .. buyer .. after)
end

-- wrk asks delay() before each request of a connection when the script
-- defines it, and calls request() a timer tick later: the share is granted
-- here, or another connection could pass between the two. Once it is all
-- granted, the connection is parked (no request goes out) until wrk stops.
function delay()
   if granted >= share then
      return 3600 * 1000
   end
   granted = granted + 1
   return 0
end

function response(status, headers, body)
   answered = answered + 1
   last_answer = now()
   local key = tostring(status)
   if status >= 300 then
      local code = body:match('"error"%s*:%s*"([^"]*)"') or body:match('"code"%s*:%s*"([^"]*)"')
      if code then
         key = key .. " " .. code
      end
   end
   answers[key] = (answers[key] or 0) + 1
   -- Every sent request answered and the share reached: this thread is done
   -- (stopping earlier would drop answers still on the way).
   if answered >= share then
      if thread_count == 1 then
         -- wrk's main thread sleeps out the duration and stops on SIGINT; the
         -- kernel hands a process's signal to its main thread first. With
         -- more threads, the others may still be sending: wrk runs its course.
         ffi.C.kill(ffi.C.getpid(), SIGINT)
      end
      wrk.thread:stop()
   end
end

local function encode(value)
   if type(value) == "table" and #value > 0 then
      local items = {}
      for _, v in ipairs(value) do
         table.insert(items, encode(v))
      end
      return "[" .. table.concat(items, ",") .. "]"
   elseif type(value) == "table" then
      local parts = {}
      for k, v in pairs(value) do
         table.insert(parts, encode(tostring(k)) .. ":" .. encode(v))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif type(value) == "string" then
      return '"' .. value:gsub('[%c"\\]', function(c)
         return string.format("\\u%04x", c:byte())
      end) .. '"'
   end
   return string.format("%.17g", value)
end

function done(summary, latency, requests)
   local result = {
      requests = summary.requests,
      duration_us = summary.duration,
      errors = summary.errors,
      latency_us = {
         p50 = latency:percentile(50),
         p95 = latency:percentile(95),
         p99 = latency:percentile(99),
         max = latency.max,
         mean = latency.mean,
      },
      threads = {},
   }
   for _, thread in ipairs(threads) do
      table.insert(result.threads, {
         sent = thread:get("sent"),
         answered = thread:get("answered"),
         first_sent = thread:get("first_sent"),
         last_answer = thread:get("last_answer"),
         answers = thread:get("answers"),
      })
   end
   io.write("WRK_RESULT " .. encode(result) .. "\n")
end
