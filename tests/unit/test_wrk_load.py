"""jobs/lib/wrk_load.py against a real wrk and a real (tiny) HTTP server: the figures it parses, the
non-2xx answers it counts, and the generator's own CPU it reports."""

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.lib.wrk_load import parse_wrk, run_wrk

REPORT = """Running 1s test @ http://127.0.0.1:18777/retrieve
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.07ms    8.42ms  48.42ms   95.65%
    Req/Sec    92.10     17.69   121.00     70.00%
  Latency Distribution
     50%   43.84ms
     75%   43.95ms
     90%   43.99ms
     99%    1.02s
  92 requests in 1.00s, 13.09KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 18
Requests/sec:     91.92
Transfer/sec:     13.08KB
Partial answers: 4
"""


def test_parse_a_wrk_report():
    result = parse_wrk(REPORT, 0.25)
    assert (result.requests, result.qps, result.p50_ms, result.p99_ms) == (92, 91.92, 43.84, 1020.0)
    assert (result.non_2xx, result.socket_errors, result.generator_cpu, result.partial) == (18, 5, 0.25, 4)
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("connection refused")


class _EveryFifthFails(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[int] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body["user_id"])
        out = json.dumps({"items": [], "partial": body["user_id"] % 2 == 1}).encode()
        self.send_response(500 if body["user_id"] % 5 == 0 else 200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_wrk_drives_a_real_server_and_counts_its_errors():
    if shutil.which("wrk") is None:
        if os.environ.get("FAIRFLEET_REQUIRE_WRK") == "1":
            pytest.fail("wrk is not installed and FAIRFLEET_REQUIRE_WRK=1")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EveryFifthFails)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_wrk(f"http://127.0.0.1:{server.server_address[1]}/retrieve", 2, 1, n_users=10, k=7,
                         first_user=100)
    finally:
        server.shutdown()
    assert result.requests > 5 and result.qps > 0 and 0 < result.p50_ms <= result.p99_ms
    assert set(_EveryFifthFails.seen) <= set(range(100, 110)), "user ids cycle over [first_user, first_user + n)"
    assert 0 < result.non_2xx < result.requests, "every fifth user's answer is a 500"
    assert 0 < result.partial < result.requests, "odd users' answers say partial"
    assert 0 <= result.generator_cpu < 1.5
