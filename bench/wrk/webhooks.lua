-- wrk script for autoseen's bench. With AUTOSEEN_BENCH_REQUESTS set, every request is the next line of that
-- file, "signature<TAB>body": unique, signed webhooks, read in order (from the start again at the end). Without
-- it, one static POST of AUTOSEEN_BENCH_BODY, unsigned: wrk at its own fastest, the generator's ceiling.
-- Either way `done` prints one line, "BENCH {json}", that the bench parses.

local path = os.getenv("AUTOSEEN_BENCH_REQUESTS")
-- Where the file's webhooks go, and which header carries their signature (WAHA's by default; Meta's bodies
-- go to /webhook/meta with X-Hub-Signature-256).
local target = os.getenv("AUTOSEEN_BENCH_PATH") or "/webhook"
local signature_header = os.getenv("AUTOSEEN_BENCH_SIGNATURE_HEADER") or "X-Webhook-Hmac"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

if path then
  local file
  local headers = { ["Content-Type"] = "application/json" }

  function init(args)
    file = assert(io.open(path, "rb"))
  end

  function request()
    local line = file:read("*l")
    if not line then
      file:seek("set", 0)
      line = file:read("*l")
    end
    local tab = line:find("\t", 1, true)
    headers[signature_header] = line:sub(1, tab - 1)
    return wrk.format(nil, target, headers, line:sub(tab + 1))
  end
else
  wrk.path = "/webhook"
  wrk.body = os.getenv("AUTOSEEN_BENCH_BODY") or "{}"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
