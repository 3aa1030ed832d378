-- wrk script for bench/wrk.py: one CloudEvent per request (structured mode), the shape of
-- bench/events.py's batch events, (source, id) unique per thread and request.
-- Arguments: source prefix, event type, event time. Prints one JSON line at the end.
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  head = '{"specversion":"1.0","type":"' .. args[2] .. '","time":"' .. args[3]
    .. '","datacontenttype":"application/json","source":"' .. args[1] .. '/wrk'
    .. thread_index .. '","id":"'
  n = 0
  headers = {["Content-Type"] = "application/cloudevents+json"}
end

function request()
  n = n + 1
  local body = head .. n .. '","subject":"customer-' .. (n % 5000)
    .. '","data":{"order":' .. n .. ',"amount":' .. (n % 997)
    .. ',"currency":"EUR","lines":[{"sku":"SKU-' .. (n % 211) .. '","qty":' .. (1 + n % 5)
    .. '}]}}'
  return wrk.format("POST", "/ingest", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
