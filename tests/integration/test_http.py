#!/usr/bin/python3
"""The HTTP API (docs/http.md) against a real daemon with spawned example bots: tokens, every
endpoint, a rolling restart started over HTTP that loses nothing, token rotation by reload, and the
abuse it must shrug off (slowloris, connection floods, a 1 GiB Content-Length, bad UTF-8, path
traversal) while slaves keep being served. TLS with a certificate made at test time."""
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from support import Fleet, assert_exactly_once, free_port, http_settings, write_private

LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal
READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"


class Client:
    """One request per connection (or a kept-alive one when given), JSON decoded when it is JSON."""

    def __init__(self, port, context=None):
        self.port = port
        self.context = context

    def connect(self):
        if self.context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=LIVENESS, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=LIVENESS)

    def request(self, method, path, token=None, body=None, headers=None):
        conn = self.connect()
        try:
            h = dict(headers or {})
            if token:
                h["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=h)
            response = conn.getresponse()
            data = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, (json.loads(data) if data and kind.startswith("application/json") else data.decode())
        finally:
            conn.close()


def raw_exchange(port, data, timeout=LIVENESS):
    """Sends `data` as is and returns everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return received
            received += chunk


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


class HttpApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens = tempfile.TemporaryDirectory(prefix="meshmaster-http-")
        settings, cls.port = http_settings(cls.tokens.name, READ, ADMIN, max_connections=16, header_timeout="1s",
                                           idle_timeout="2s")
        cls.read_file, cls.admin_file = settings["read_token_file"], settings["admin_token_file"]
        cls.fleet = Fleet(shards=32, slaves=2, rate=200, settings={"http": settings})
        cls.fleet.__enter__()
        cls.master = cls.fleet.master
        cls.api = Client(cls.port)
        cls.master.wait_running()

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()
        cls.tokens.cleanup()

    def log(self):
        with open(self.master.log_path) as f:
            return f.read()

    def test_health_and_readiness_need_no_token(self):
        self.assertEqual(self.api.request("GET", "/healthz"), (200, {"status": "ok"}))
        code, ready = self.api.request("GET", "/readyz")
        self.assertEqual(code, 200, ready)
        self.assertEqual((ready["ready"], ready["shards_total"]), (True, 32))
        code, body = self.api.request("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn("meshmaster_build_info{", body)

    def test_head_is_get_without_the_body(self):
        """What load balancers and uptime checks send: GET's status and headers, Content-Length
        included, and not one byte of body, so the kept-alive connection's next answer is whole."""
        get = raw_exchange(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        get_body = get.split(b"\r\n\r\n", 1)[1]
        both = raw_exchange(self.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                       b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, rest = both.split(b"\r\n\r\n", 1)
        self.assertEqual(status_of(head), 200, head)
        self.assertIn(f"Content-Length: {len(get_body)}".encode(), head)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 "), f"HEAD sent a body: {rest[:80]!r}")
        self.assertEqual(rest.split(b"\r\n\r\n", 1)[1], get_body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=LIVENESS)
        try:
            for path, token, code, kind in (("/", None, 200, "text/html"), ("/metrics", None, 200, "text/plain"),
                                            ("/v1/status", None, 401, "application/json"),
                                            ("/v1/status", READ, 200, "application/json"),
                                            ("/v1/nothing", READ, 404, "application/json")):
                conn.request("HEAD", path, headers={"Authorization": f"Bearer {token}"} if token else {})
                response = conn.getresponse()
                self.assertEqual((response.status, response.read()), (code, b""), path)
                self.assertTrue(response.getheader("Content-Type").startswith(kind), path)
                self.assertGreater(int(response.getheader("Content-Length")), 0, path)
        finally:
            conn.close()
        # The event stream's HEAD: its headers, then the connection ends (no stream is started).
        answer = raw_exchange(self.port, f"HEAD /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ}"
                                         "\r\n\r\n".encode())
        head, rest = answer.split(b"\r\n\r\n", 1)
        self.assertEqual((status_of(head), rest), (200, b""), answer)
        self.assertIn(b"text/event-stream", head)
        # An action takes POST alone; a read takes GET and HEAD, and 405 says which.
        for method, path, token, allow in (("HEAD", "/v1/restart", ADMIN, "POST"), ("DELETE", "/v1/status", READ, "GET, HEAD")):
            answer = raw_exchange(self.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                                             "Connection: close\r\n\r\n".encode())
            self.assertEqual(status_of(answer), 405, answer)
            self.assertIn(f"\r\nAllow: {allow}\r\n".encode(), answer)
        self.assertEqual(self.master.events("restart_started"), [], "a HEAD acted")

    def test_requests_are_counted_by_route_and_code_and_promtool_accepts_them(self):
        def count(route, code):
            found = re.search(rf'(?m)^meshmaster_http_requests_total\{{route="{re.escape(route)}",code="{code}"\}} (\d+)$',
                              self.api.request("GET", "/metrics")[1])
            return int(found.group(1)) if found else 0
        before = count("GET /v1/shards", 400), count("other", 404), count("GET /healthz", 200)
        self.api.request("GET", "/v1/shards?state=asleep", token=READ)
        self.api.request("GET", "/v1/nowhere", token=READ)
        self.api.request("GET", "/v1/nowhere", token=READ)
        self.api.request("HEAD", "/healthz")
        after = count("GET /v1/shards", 400), count("other", 404), count("GET /healthz", 200)
        self.assertEqual(tuple(a - b for a, b in zip(after, before)), (1, 2, 1))
        out = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=self.api.request("GET", "/metrics")[1],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual((out.returncode, out.stdout + out.stderr), (0, ""))

    def test_tokens(self):
        for token in (None, "wrong-token-0123456789abcdef"):
            code, body = self.api.request("GET", "/v1/status", token=token)
            self.assertEqual(code, 401, body)
            self.assertIn("error", body)
        code, body = self.api.request("POST", "/v1/restart", token=READ)
        self.assertEqual(code, 403, body)
        self.assertEqual(self.master.events("restart_started"), [], "a forbidden request acted")
        self.assertEqual(self.api.request("GET", "/v1/status", token=READ)[0], 200)
        self.assertEqual(self.api.request("GET", "/v1/status", token=ADMIN)[0], 200)
        # Each refusal is counted by reason, whether or not the log limiter wrote it.
        code, metrics = self.api.request("GET", "/metrics")
        self.assertRegex(metrics, r'(?m)^meshmaster_refusals_total\{reason="http_unauthorized"\} [1-9]')
        self.assertRegex(metrics, r'(?m)^meshmaster_refusals_total\{reason="http_forbidden"\} [1-9]')
        # Never logged, whatever was presented.
        self.assertNotIn("wrong-token", self.log())
        self.assertNotIn(READ, self.log())
        self.assertNotIn(ADMIN, self.log())

    def test_read_endpoints_answer_what_the_control_socket_answers(self):
        code, st = self.api.request("GET", "/v1/status", token=READ)
        self.assertEqual(code, 200)
        cli = self.master.status()
        self.assertEqual(set(st), set(cli))
        self.assertEqual(len(st["shards"]), 32)
        code, summary = self.api.request("GET", "/v1/status?detail=summary", token=READ)
        self.assertEqual((code, summary["detail"]), (200, "summary"))
        self.assertNotIn("shards", summary)
        self.assertEqual(self.api.request("GET", "/v1/status?detail=everything", token=READ)[0], 400)
        code, slaves = self.api.request("GET", "/v1/slaves", token=READ)
        self.assertEqual(code, 200)
        self.assertEqual(sorted(s["id"] for s in slaves["slaves"]), sorted(s["id"] for s in cli["slaves"]))
        code, shards = self.api.request("GET", "/v1/shards?state=running", token=READ)
        self.assertEqual((code, len(shards["shards"])), (200, 32))
        code, shards = self.api.request("GET", "/v1/shards?state=unowned", token=READ)
        self.assertEqual((code, shards["shards"]), (200, []))
        self.assertEqual(self.api.request("GET", "/v1/shards?state=asleep", token=READ)[0], 400)
        code, body = self.api.request("GET", "/v1/restarts/12345", token=READ)
        self.assertEqual(code, 404)
        self.assertIn("event log", body["error"])
        self.assertEqual(self.api.request("GET", "/v1/restarts/abc", token=READ)[0], 400)

    def test_malformed_requests_are_refused_with_json_errors(self):
        # A 1 GiB Content-Length: 413 at once, the body never read (we send none).
        answer = raw_exchange(self.port, b"POST /v1/restart HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ADMIN.encode() +
                              b"\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
        self.assertEqual(status_of(answer), 413, answer[:300])
        self.assertIn(b"http.max_body", answer)
        # Bad UTF-8 in a JSON body.
        code, body = self.api.request("POST", "/v1/stop", token=ADMIN, body=b'{"leave_slaves": "\xff"}',
                                      headers={"Content-Type": "application/json"})
        self.assertEqual(code, 400, body)
        self.assertIn("UTF-8", body["error"])
        self.assertEqual(self.api.request("POST", "/v1/stop", token=ADMIN, body=b'{"leave_slaves": 1}')[0], 400)
        # Path traversal, raw and encoded: nothing is served from a path.
        for path in ("/../etc/passwd", "/v1/%2e%2e/healthz", "/v1/..%2fstatus", "/healthz/..", "/v1/%2E%2E/%2E%2E/etc/passwd"):
            answer = raw_exchange(self.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            self.assertEqual(status_of(answer), 404, path)
        # Headers past http.max_header: 431.
        answer = raw_exchange(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertEqual(status_of(answer), 431, answer[:300])
        # Not HTTP at all: 400.
        self.assertEqual(status_of(raw_exchange(self.port, b"HELLO THERE\r\n\r\n")), 400)
        code, body = self.api.request("PUT", "/v1/status", token=READ)
        self.assertEqual(code, 405)
        self.assertEqual(self.api.request("GET", "/v1/nothing", token=READ)[0], 404)
        # None of that disturbed the fleet.
        self.assertEqual(self.api.request("GET", "/readyz")[0], 200)
        self.assertIsNone(self.master.process.poll())

    def test_slowloris_is_cut_at_the_header_deadline(self):
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100 + b"\r\n\r\n"
        cut = False
        with socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS) as s:
            for byte in request:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    cut = True
                    break
                # Between bytes, the API serves others.
                self.assertEqual(self.api.request("GET", "/healthz")[0], 200)
                s.settimeout(0.3)
                try:
                    if s.recv(1024) == b"":
                        cut = True
                        break
                except socket.timeout:
                    pass
                except OSError:
                    cut = True
                    break
        self.assertTrue(cut, "the slow client was never cut")
        # header_timeout is 1 s; the request would take over 30 s to send at this pace.
        self.assertLess(time.monotonic() - started, 30)

    def test_connection_floods_are_bounded_and_the_daemon_keeps_serving(self):
        held = []
        try:
            for _ in range(300):
                held.append(socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS))
            # Past max_connections (16) each connection is answered 503 and closed.
            refused = 0
            for s in held[16:]:
                s.settimeout(LIVENESS)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                refused += status_of(data) == 503
            self.assertEqual(refused, len(held) - 16)
        finally:
            for s in held:
                s.close()
        # 10,000 connects in a row, each closed at once.
        for _ in range(10000):
            socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS).close()
        deadline = time.monotonic() + LIVENESS
        while self.api.request("GET", "/healthz")[0] != 200:  # the held ones are being closed
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(self.master.status()["shards_running"], 32)

    def test_z_restart_over_http_completes_with_nothing_lost_under_abuse(self):
        code, answer = self.api.request("POST", "/v1/restart", token=ADMIN)
        self.assertEqual(code, 202, answer)
        self.assertTrue(answer["accepted"])
        self.assertEqual(answer["progress"], f"/v1/restarts/{answer['restart']}")
        # While it runs: bad requests of every kind, and a flood.
        for _ in range(20):
            self.api.request("GET", "/v1/status", token="wrong-token-0123456789abcdef")
            raw_exchange(self.port, b"POST /v1/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
            raw_exchange(self.port, b"GET /v1/%2e%2e/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        floods = [socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS) for _ in range(64)]
        for s in floods:
            s.close()
        deadline = time.monotonic() + 120
        while True:
            code, progress = self.api.request("GET", answer["progress"], token=READ)
            self.assertEqual(code, 200, progress)
            if progress["state"] != "running":
                break
            self.assertLess(time.monotonic(), deadline, progress)
            time.sleep(0.1)
        self.assertEqual(progress["state"], "completed", progress)
        self.assertEqual(progress["outcome"]["shards_moved"], 32)
        # The log says who asked: the API and the client's address.
        started = [r for r in self.master.events("restart_started") if r["restart"] == answer["restart"]]
        self.assertEqual(len(started), 1)
        self.assertRegex(started[0]["reason"], r"^HTTP API from 127\.0\.0\.1:\d+$")
        self.master.wait_running()
        self.assertEqual(self.fleet.gateway.drain(), "drained")
        assert_exactly_once(self, self.fleet.gateway.report())

    def test_reload_rotates_the_tokens_and_names_what_is_not_applied(self):
        new_admin = "rotated-admin-token-0123456789"
        with open(self.master.config) as f:
            original = f.read()
        try:
            write_private(self.admin_file, new_admin + "\n")
            code, answer = self.api.request("POST", "/v1/reload", token=ADMIN)
            self.assertEqual(code, 200, answer)
            self.assertEqual(answer["result"], "reloaded")
            self.assertEqual(self.api.request("GET", "/v1/status", token=ADMIN)[0], 401)
            self.assertEqual(self.api.request("GET", "/v1/status", token=new_admin)[0], 200)
            # A token file others may read rejects the reload: 422, nothing applied.
            os.chmod(self.admin_file, 0o644)
            code, answer = self.api.request("POST", "/v1/reload", token=new_admin)
            self.assertEqual(code, 422, answer)
            self.assertIn("chmod 600", " ".join(answer["errors"]))
            self.assertEqual(self.api.request("GET", "/v1/status", token=new_admin)[0], 200)
            os.chmod(self.admin_file, 0o600)
            # A new HTTP port is not applied: named.
            with open(self.master.config, "w") as f:
                f.write(original.replace(f"127.0.0.1:{self.port}", f"127.0.0.1:{free_port()}"))
            code, answer = self.api.request("POST", "/v1/reload", token=new_admin)
            self.assertEqual(code, 200, answer)
            self.assertEqual(answer["not_applied"], ["http.listen"])
        finally:
            with open(self.master.config, "w") as f:
                f.write(original)
            write_private(self.admin_file, ADMIN + "\n")
            self.assertEqual(self.api.request("POST", "/v1/reload", token=new_admin)[0], 200)
        self.assertEqual(self.api.request("GET", "/v1/status", token=ADMIN)[0], 200)


class CheckConfig(unittest.TestCase):
    """check-config refuses what the start would: token files others may read, https without a
    certificate, a listen address that is not one."""

    def check(self, http_table, files=None):
        binary = os.path.join(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"), "master", "meshmaster")
        with tempfile.TemporaryDirectory(prefix="meshmaster-http-check-") as d:
            for name, (text, mode) in (files or {}).items():
                write_private(os.path.join(d, name), text, mode)
            config = os.path.join(d, "m.toml")
            with open(config, "w") as f:
                f.write(f'shards = 8\nevent_log = "{d}/e.jsonl"\ncontrol_socket = "{d}/s.sock"\n'
                        f'[slaves]\ncount = 2\ncommand = ["/bin/true"]\n[http]\n' + http_table.replace("DIR", d))
            return subprocess.run([binary, "check-config", "-c", config], capture_output=True, text=True, timeout=60)

    def test_http_settings_are_checked(self):
        good = {"admin.token": (ADMIN + "\n", 0o600)}
        out = self.check('admin_token_file = "DIR/admin.token"\n', good)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = self.check('admin_token_file = "DIR/admin.token"\n', {"admin.token": (ADMIN + "\n", 0o644)})
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.admin_token_file", out.stderr)
        self.assertIn("chmod 600", out.stderr)
        self.assertNotIn(ADMIN, out.stderr + out.stdout)
        out = self.check('read_token_file = "DIR/missing.token"\n')
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.read_token_file", out.stderr)
        out = self.check("https = true\n")
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.https: needs tls.cert and tls.key", out.stderr)
        out = self.check('listen = "nowhere"\n')
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.listen", out.stderr)
        out = self.check('max_body = "1GiB"\n')
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.max_body", out.stderr)
        out = self.check("bogus = 1\n")
        self.assertEqual(out.returncode, 78)
        self.assertIn("http.bogus is not a setting", out.stderr)


class Truthful(unittest.TestCase):
    """Statuses tell the truth: not ready is 503 with the reason, a refused action 409."""

    def fleet(self, **kwargs):
        d = tempfile.TemporaryDirectory(prefix="meshmaster-http-")
        self.addCleanup(d.cleanup)
        admin = os.path.join(d.name, "admin.token")
        write_private(admin, ADMIN + "\n")
        port = free_port()
        settings = kwargs.pop("settings", {})
        settings["http"] = {"listen": f"127.0.0.1:{port}", "admin_token_file": admin}
        fleet = Fleet(settings=settings, **kwargs)
        self.addCleanup(fleet.close)
        fleet.__enter__()
        return fleet, Client(port)

    def test_not_ready_while_slots_cannot_start(self):
        fleet, api = self.fleet(shards=4, slaves=2, settings={"slaves": {"command": ["/bin/false"]}})
        fleet.master.wait_for(lambda s: any(slot["failed"] for slot in s["slots"]), LIVENESS, "a failed slot")
        code, ready = api.request("GET", "/readyz")
        self.assertEqual(code, 503, ready)
        self.assertFalse(ready["ready"])
        self.assertIn("slot", ready["reason"])
        self.assertEqual(api.request("GET", "/healthz")[0], 200)  # alive, not ready

    def test_while_stopping_not_ready_and_actions_refused_with_409(self):
        # Slaves that ignore shutdown make the stop last (they are killed at timeouts.shutdown).
        fleet, api = self.fleet(shards=4, slaves=2, rate=50, bot_args=["--ignore-shutdown"],
                                settings={"timeouts": {"shutdown": "10s"}})
        fleet.master.wait_running()
        code, answer = api.request("POST", "/v1/stop", token=ADMIN)
        self.assertEqual((code, answer["result"]), (202, "stopping"), answer)
        [stopping] = fleet.master.events("master_stopping")
        self.assertRegex(stopping["reason"], r"^graceful \(HTTP API from 127\.0\.0\.1:\d+\)$")
        code, ready = api.request("GET", "/readyz")
        self.assertEqual((code, ready["reason"]), (503, "stopping"), ready)
        code, answer = api.request("POST", "/v1/restart", token=ADMIN)
        self.assertEqual(code, 409, answer)
        self.assertEqual(answer["accepted"], False)
        self.assertIn("stopping", answer["error"])
        code, answer = api.request("POST", "/v1/stop", token=ADMIN, body=b'{"leave_slaves": true}')
        self.assertEqual(code, 409, answer)
        self.assertIn("cannot be left running", answer["error"])
        code, answer = api.request("POST", "/v1/stop", token=ADMIN)
        self.assertEqual((code, answer["result"]), (202, "already_stopping"), answer)


class HttpsAndStop(unittest.TestCase):
    def test_https_with_the_tls_certificate_then_stop_over_http(self):
        with tempfile.TemporaryDirectory(prefix="meshmaster-https-") as d:
            cert, key = os.path.join(d, "master.pem"), os.path.join(d, "master.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
            admin = os.path.join(d, "admin.token")
            write_private(admin, ADMIN + "\n")
            port = free_port()
            with Fleet(shards=8, slaves=2, settings={"tls": {"cert": cert, "key": key}, "http": {
                    "listen": f"127.0.0.1:{port}", "admin_token_file": admin, "https": True}}) as fleet:
                context = ssl.create_default_context(cafile=cert)
                api = Client(port, context)
                self.assertEqual(api.request("GET", "/healthz"), (200, {"status": "ok"}))
                fleet.master.wait_running()
                self.assertEqual(api.request("GET", "/readyz")[0], 200)
                # Plain HTTP on the TLS port gets nothing.
                self.assertIsNone(status_of(raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")))
                # The read token is not configured: the admin one reads too.
                self.assertEqual(api.request("GET", "/v1/slaves", token=ADMIN)[0], 200)
                code, answer = api.request("POST", "/v1/stop", token=ADMIN, body=b"{}")
                self.assertEqual((code, answer["result"]), (202, "stopping"), answer)
                self.assertEqual(fleet.master.process.wait(LIVENESS), 0)
                self.assertEqual(fleet.master.events()[-1]["event"], "master_stopped")


if __name__ == "__main__":
    unittest.main(verbosity=2)
