-- wrk script for bench/run-authhttp: sends nginx's mail proxy request to
-- auth_http (ngx_mail_auth_http_module, nginx 1.22.1): headers in nginx's
-- order, the shared-secret header last (auth_http_header).
--
--   wrk -t2 -c16 -d3s -s authhttp.lua http://127.0.0.1:PORT/auth -- \
--       USER PASS SECRET_HEADER SECRET EXPECT_STATUS FORM
--
-- FORM "exact": byte for byte what nginx sends: "GET /auth HTTP/1.0", no
--   Connection header. Servers answering HTTP/1.0 without Content-Length
--   (dovegate-auth's libevent, python http.server) end the answer by closing;
--   wrk 4.1 then counts the answer AND a read error, and reconnects twice
--   (socket_readable: response_complete() reconnects, then the EOF is taken
--   for an unfinished body: errors.read++ and a second reconnect), so the
--   server also pays for one empty connection per request.
-- FORM "close": the same headers, request line HTTP/1.1 and "Connection:
--   close" appended. Answers then carry Content-Length (or are 204) plus
--   close semantics: wrk reconnects exactly once per request, no errors.
-- In both forms every request uses a new TCP connection, as nginx's do;
-- bench/run-authhttp checks each run (kernel TCP PassiveOpens >= requests).
--
-- Environment (read at load time: wrk decides whether to call response() and
-- delay() before init() runs):
--   BENCH_CHECK=1       check every response's Auth-Status against EXPECT_STATUS
--                       (costs a Lua call per response: smoke mode only)
--   BENCH_DELAY_MS=x.y  wait about x.y ms (dithered between the two integers
--                       around it) before each request: a paced, lower rate
--   BENCH_NUSERS=N      (bench/run-memory) a different user per request, round
--                       robin over u000000 .. u<N-1> with password "p-<user>";
--                       USER and PASS are then ignored (a Lua call per request)

local req
local expect
bad, checked = 0, 0   -- globals: done() reads them with thread:get()
local threads = {}

local function esc(s)
  -- nginx escapes Auth-User/Auth-Pass bytes 0x00-0x1F, space and '%' as %XX
  return (s:gsub("[%z\1-\31 %%]", function(c) return string.format("%%%02X", c:byte()) end))
end

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

function init(args)
  local user, pass, hname, hvalue = args[1], args[2], args[3], args[4]
  expect = args[5] or "OK"
  local close = args[6] == "close"
  local path = wrk.path ~= "" and wrk.path or "/"
  local head = "GET " .. path .. (close and " HTTP/1.1\r\n" or " HTTP/1.0\r\n")
     .. "Host: " .. wrk.host .. "\r\n"
     .. "Auth-Method: plain\r\n"
  local tail = "Auth-Protocol: imap\r\n"
     .. "Auth-Login-Attempt: 1\r\n"
     .. "Client-IP: 127.0.0.1\r\n"
     .. hname .. ": " .. hvalue .. "\r\n"
     .. (close and "Connection: close\r\n" or "")
     .. "\r\n"
  req = head .. "Auth-User: " .. esc(user) .. "\r\n"
     .. "Auth-Pass: " .. esc(pass) .. "\r\n" .. tail
  if nusers then
    -- threads start at different users; each walks all of them
    local n = math.floor((thread_no or 0) * nusers / 7)
    request = function()
      n = (n + 1) % nusers
      local u = string.format("u%06d", n)
      return head .. "Auth-User: " .. u .. "\r\nAuth-Pass: p-" .. u .. "\r\n" .. tail
    end
    return
  end
  -- wrk's own wrk.init() calls this init(), then builds the (static) request
  -- once per thread with wrk.format(): hand it ours. A global request()
  -- would make wrk call Lua for every request.
  wrk.format = function() return req end
end


nusers = tonumber(os.getenv("BENCH_NUSERS") or "")
if nusers then
  -- defined at load time, so wrk calls it per request (and once to count
  -- pipelined requests: a valid placeholder); init() replaces it
  function request() return "GET / HTTP/1.1\r\nHost: x\r\n\r\n" end
end

if os.getenv("BENCH_CHECK") == "1" then
  function response(status, headers, body)
    checked = checked + 1
    local got = headers["Auth-Status"] or headers["auth-status"]
    if got ~= expect then
      bad = bad + 1
      if bad <= 3 then
        io.stderr:write("unexpected Auth-Status: ", tostring(got), " (status ", status, ")\n")
      end
    end
  end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms then
  local lo = math.floor(delay_ms)
  local frac = delay_ms - lo
  function delay()
    if math.random() < frac then return lo + 1 end
    return lo
  end
end

function done(summary, latency, requests)
  local nbad, nchecked = 0, 0
  for _, t in ipairs(threads) do
    nbad = nbad + (tonumber(t:get("bad")) or 0)
    nchecked = nchecked + (tonumber(t:get("checked")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "connect=%d read=%d write=%d timeout=%d status=%d checked=%d bad_status=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
    nchecked, nbad))
end
