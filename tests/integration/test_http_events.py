#!/usr/bin/python3
"""The HTTP API's event feed and drain (docs/http.md, "Events" and "Drain") against a real daemon
with spawned example bots: GET /v1/events pages and filters what the event log holds, the
Server-Sent Events stream delivers a drain's records live and resumes from Last-Event-ID, and a
drain — over HTTP and with `meshmaster drain --wait` — moves one slave's shards, with their state,
to a fresh slave for its slot while the other slave keeps its own, losing nothing."""
import http.client
import json
import re
import tempfile
import time
import unittest

from support import Fleet, assert_exactly_once, http_settings

LIVENESS = 60  # seconds: a limit on waiting, never a speed goal
READ = "read-token-events-0123456789"
ADMIN = "admin-token-events-0123456789"


class EventStream:
    """GET /v1/events/stream, read message by message (id, event, data) as it arrives."""

    def __init__(self, port, token, path="/v1/events/stream", headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LIVENESS)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}", **(headers or {})})
        self.response = self.conn.getresponse()

    def next(self):
        """The next message as a dict of its fields (comments skipped), or None at the end."""
        fields = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue  # a comment: the stream's greeting, or a keep-alive
            name, _, value = line.partition(": ")
            fields[name] = value

    def until(self, predicate):
        seen = []
        while True:
            message = self.next()
            if message is None:
                raise AssertionError(f"the stream ended before the awaited event; got {seen[-5:]}")
            if "id" not in message:
                continue  # `retry:` alone: how long a browser waits before it reconnects
            seen.append(message)
            if predicate(message):
                return seen

    def close(self):
        self.conn.close()


class HttpEventsAndDrain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens = tempfile.TemporaryDirectory(prefix="meshmaster-http-events-")
        settings, cls.port = http_settings(cls.tokens.name, READ, ADMIN)
        cls.fleet = Fleet(shards=16, slaves=2, rate=200, settings={"http": settings})
        cls.fleet.__enter__()
        cls.master = cls.fleet.master
        cls.master.wait_running()

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()
        cls.tokens.cleanup()

    def get(self, path, token=READ, method="GET"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=LIVENESS)
        try:
            conn.request(method, path, headers={"Authorization": f"Bearer {token}"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def test_a_events_page_filters_and_goes_on_from_next_since(self):
        code, page = self.get("/v1/events?since=0&type=shard_started&limit=1000")
        self.assertEqual(code, 200, page)
        started = [e for e in self.master.events("shard_started")]
        self.assertEqual([e["seq"] for e in page["events"]], [e["seq"] for e in started])
        self.assertEqual(page["events"][0], started[0])  # the log's own line, byte for byte as JSON
        self.assertFalse(page["gap"])
        # A page cut by its limit, then the rest from next_since: every record once, in order.
        code, first = self.get("/v1/events?since=0&limit=5")
        code, rest = self.get(f"/v1/events?since={first['next_since']}&limit=1000")
        seqs = [e["seq"] for e in first["events"] + rest["events"]]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(seqs[:len(self.master.events())], [e["seq"] for e in self.master.events()][:len(seqs)])
        # By shard and by slave (as either side of a move).
        code, one = self.get("/v1/events?since=0&shard=3&limit=1000")
        self.assertTrue(one["events"])
        self.assertTrue(all(e.get("shard") == 3 for e in one["events"]))
        # No since: the newest records.
        code, newest = self.get("/v1/events?limit=2")
        self.assertEqual([e["seq"] for e in newest["events"]], [e["seq"] for e in self.master.events()][-2:])

    def test_b_bad_queries_are_refused_by_name(self):
        for query, words in (("type=nope", "type 'nope' is not an event name"), ("limit=0", "limit must be 1 to 1000"),
                             ("since=-1", "since must be"), ("shard=x", "shard must be"),
                             ("colour=red", "unknown parameter 'colour'"), ("limit=1&limit=2", "given twice")):
            code, body = self.get(f"/v1/events?{query}")
            self.assertEqual(code, 400, query)
            self.assertIn(words, body["error"])
        code, body = self.get("/v1/events")
        self.assertEqual(code, 200)
        self.assertEqual(self.get("/v1/events", token="wrong-token-0123456789abcd")[0], 401)

    def test_c_drain_over_http_streamed_live_and_resumed(self):
        status = self.master.wait_running()
        victim = next(s for s in status["slaves"] if s["slot"] == 0)
        other = next(s for s in status["slaves"] if s["slot"] == 1)
        held = {s["shard"]: s["epoch"] for s in status["shards"] if s["owner"] == victim["id"]}
        self.assertEqual(self.get(f"/v1/slaves/{victim['id']}/drain", token=READ, method="POST")[0], 403)
        code, body = self.get("/v1/slaves/nobody/drain", token=ADMIN, method="POST")
        self.assertEqual((code, body["error"]), (404, "no slave 'nobody' in this fleet"))

        stream = EventStream(self.port, READ)  # from now on
        try:
            code, answer = self.get(f"/v1/slaves/{victim['id']}/drain", token=ADMIN, method="POST")
            self.assertEqual(code, 202, answer)
            self.assertEqual(answer["progress"], f"/v1/restarts/{answer['restart']}")
            seen = stream.until(lambda m: m.get("event") in ("restart_completed", "restart_failed"))
        finally:
            stream.close()
        self.assertEqual(seen[-1]["event"], "restart_completed", seen[-5:])
        records = [json.loads(m["data"]) for m in seen if "data" in m and m.get("event") != "gap"]
        self.assertEqual([int(m["id"]) for m in seen], [r["seq"] for r in records])  # id is the log's seq
        self.assertEqual(sorted(r["shard"] for r in records if r["event"] == "migration_completed"), sorted(held))
        reasons = [r.get("reason") for r in records if r["event"] == "restart_started"]
        self.assertEqual(len(reasons), 1, reasons)
        self.assertRegex(reasons[0], rf"^drain {re.escape(victim['id'])} \(HTTP API from 127\.0\.0\.1:\d+\)$")

        # A reader that dropped resumes after the last id it had, with nothing missed or repeated.
        middle = seen[len(seen) // 2]
        resumed = EventStream(self.port, READ, headers={"Last-Event-ID": middle["id"]})
        try:
            again = resumed.until(lambda m: m.get("event") == "restart_completed")
        finally:
            resumed.close()
        self.assertEqual([m["id"] for m in again], [m["id"] for m in seen[len(seen) // 2 + 1:]])

        after = self.master.wait_running()
        owners = {s["shard"]: (s["owner"], s["epoch"]) for s in after["shards"]}
        new = {owners[s][0] for s in held}
        self.assertEqual(len(new), 1)
        self.assertNotIn(victim["id"], new)
        for shard, epoch in held.items():
            self.assertEqual(owners[shard][1], epoch + 1)
        still = next(s for s in after["slaves"] if s["id"] == other["id"])
        self.assertEqual(still["pid"], other["pid"])  # the other slave was not touched
        self.assertNotIn(victim["id"], [s["id"] for s in after["slaves"]])
        self.assertEqual(self.fleet.gateway.drain(), "drained")
        assert_exactly_once(self, self.fleet.gateway.report())

    def test_d_cli_drain(self):
        status = self.master.wait_running()
        victim = next(s for s in status["slaves"] if s["slot"] == 1)
        out = self.master.cli("drain", "nobody")
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("drain refused: no slave 'nobody' in this fleet", out.stderr)
        out = self.master.cli("drain", victim["id"], "--wait")
        self.assertEqual(out.returncode, 0, out)
        self.assertIn(f"draining {victim['id']}: restart", out.stdout)
        self.assertRegex(out.stdout, r"restart \d+ completed in [0-9.]+ s, \d+ shards moved")
        after = self.master.wait_running()
        self.assertNotIn(victim["id"], [s["id"] for s in after["slaves"]])
        self.assertEqual(self.fleet.gateway.drain(), "drained")
        assert_exactly_once(self, self.fleet.gateway.report())


if __name__ == "__main__":
    unittest.main()
