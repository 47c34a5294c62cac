#!/usr/bin/python3
"""Slow and malicious peers: connections that say nothing, one that dribbles a byte at a time, a
flood of thousands of connections, a flood of wrong secrets. The master keeps serving its real
slaves — shards keep running, events keep being processed, the CLI answers — refuses or times out
the rest, and logs what it refused without drowning its log: refusals are limited per peer, and
counted in refusals_suppressed records."""
import collections
import json
import os
import re
import resource
import socket
import time
import unittest

from fake_slave import EVENTS, FakeSlave, frame
from support import Fleet, assert_single_owners

SOURCE_DIR = os.environ.get("MESHMASTER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def documented_stderr_events():
    """The events docs/events.md says also go to stderr: the lifecycle list and the refusals."""
    with open(os.path.join(SOURCE_DIR, "docs", "events.md")) as f:
        text = f.read()
    refusals = re.search(r"^Refusals — (.*?) — are limited", text, re.S | re.M)
    lifecycle = re.search(r"^Lifecycle events also go to the daemon's stderr.*?\n\n", text, re.S | re.M)
    assert refusals and lifecycle, "docs/events.md no longer lists the refusals and lifecycle events"
    return set(re.findall(r"`([a-z_]+)`", refusals.group(1) + lifecycle.group(0)))


def stderr_events(log_path):
    """The daemon's stderr lines that carry an event record, as (seq, event)."""
    lines = []
    with open(log_path) as f:
        for line in f:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("component") == "meshmaster" and "event" in o:
                lines.append((o.get("seq"), o["event"]))
    return lines


LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


class Abuse(unittest.TestCase):
    def test_idle_dribbling_and_a_flood_of_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        with Fleet(shards=8, slaves=2, rate=200,
                   settings={"limits": {"max_connections": 200}, "timeouts": {"handshake": "1s"}}) as fleet:
            master = fleet.master
            status = master.wait_running()
            host, port = status["listen"].rsplit(":", 1)
            processed = fleet.gateway.report()["processed"]

            idle = [socket.create_connection((host, int(port))) for _ in range(50)]
            dribbling_since = time.monotonic()  # before the connect: the master's deadline starts later
            dribbler = socket.create_connection((host, int(port)))
            # A well-formed hello, a byte at a time: too slow to finish within the handshake deadline.
            dribble = iter(frame(8, {"version_major": 1, "version_minor": 1, "slave_id": "slowpoke",
                                     "nonce": b"\0" * 32}))
            flood = []
            for _ in range(2000):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect((host, int(port)))
                except BlockingIOError:
                    pass
                flood.append(s)

            # During the flood: the CLI answers (each status within the CLI's liveness limit; the
            # slowest is printed, not judged) and the slaves keep working. Until the dribbler is
            # cut, and 15 rounds at least.
            worst = 0.0
            cut_after = None
            rounds = 0
            deadline = time.monotonic() + LIVENESS
            while rounds < 15 or (cut_after is None and time.monotonic() < deadline):
                started = time.monotonic()
                status = master.status()
                worst = max(worst, time.monotonic() - started)
                if cut_after is None:
                    byte = next(dribble, None)
                    self.assertIsNotNone(byte, "the whole hello went through: the dribbler was never cut off")
                    try:
                        dribbler.send(bytes([byte]))
                    except (BrokenPipeError, ConnectionResetError):
                        cut_after = time.monotonic() - dribbling_since
                rounds += 1
                time.sleep(0.1)
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1"])
            self.assertGreater(fleet.gateway.report()["processed"], processed, "the slaves stopped working")

            # The dribbler is cut at the handshake deadline (1 s: not before), the idle ones too.
            self.assertIsNotNone(cut_after, "the dribbler was never cut off")
            self.assertGreaterEqual(cut_after, 0.9)
            time.sleep(0.5)
            for s in idle + flood + [dribbler]:
                s.close()

            out = master.cli("restart", "--wait")  # business as usual
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            # What the limiter still holds back is written when the master stops, before its last record.
            self.assertEqual(master.stop(), 0)
            events = master.events()
        refused = [e for e in events if e["event"] == "connection_refused"]
        timeouts = [e for e in events if e["event"] == "handshake_timeout"]
        # Every connection came from 127.0.0.1: one peer, limited as one (the real slaves' records
        # are no refusals and are not limited).
        summaries = [e for e in events if e["event"] == "refusals_suppressed"]
        self.assertTrue(all(e["address"] == "127.0.0.1" for e in summaries), summaries)
        counted = len(refused) + len(timeouts) + sum(e["suppressed"] for e in summaries)
        self.assertGreaterEqual(counted, 1800 + 50)
        self.assertLessEqual(len(refused) + len(timeouts), 10, "the log must not drown in a flood")
        self.assertEqual(events[-1]["event"], "master_stopped")
        self.assertFalse([e for e in events if e["event"] == "slave_lost"])
        print(f"\n{counted} connections refused or timed out, in {len(refused) + len(timeouts)} records and "
              f"{len(summaries)} summaries; slowest status during the flood {worst * 1000:.0f} ms")

    def test_a_flood_of_wrong_secrets_from_one_peer_writes_a_bounded_number_of_records(self):
        flood, burst = 300, 5
        # A window far longer than the test: the counts below cannot depend on the machine's speed.
        with Fleet(shards=4, slaves=2, rate=100,
                   settings={"limits": {"refusal_burst": burst, "refusal_window": "1h"}}) as fleet:
            master = fleet.master
            address = master.wait_running()["listen"]
            for i in range(flood):
                fake = FakeSlave(address, f"intruder-{i}", "not-the-secret-at-all", source="127.0.0.2")
                name, body = fake.handshake()
                self.assertEqual((name, body["code"]), ("error", "auth_failed"))
                fake.close()
            # Another peer's first refusal is not held back by that flood.
            other = FakeSlave(address, "other", "also-not-the-secret", source="127.0.0.3")
            self.assertEqual(other.handshake()[0], "error")
            other.close()
            # A peer that goes away in the middle of its hello.
            cut = FakeSlave(address, "cut", "whatever", source="127.0.0.4")
            self.assertEqual(cut.receive()[0], "auth_challenge")
            hello = frame(EVENTS["slave_hello"], {"version_major": 1, "version_minor": 0, "slave_id": "cut",
                                                  "nonce": b"\0" * 32})
            cut.send_raw(hello[:20])
            cut.close()
            deadline = time.monotonic() + 30  # a liveness limit only: the record comes at once
            while not master.events("frame_truncated") and time.monotonic() < deadline:
                time.sleep(0.05)

            # The real slaves go on, every record of theirs is logged: a rolling restart.
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(master.stop(), 0)
            events = master.events()
            stderr = stderr_events(master.log_path)

        def peer(e):
            return e.get("address", "").rsplit(":", 1)[0] if e["event"] != "refusals_suppressed" else e["address"]

        flooded = [e for e in events if peer(e) == "127.0.0.2"]
        written = [e for e in flooded if e["event"] == "auth_failed"]
        summaries = [e for e in flooded if e["event"] == "refusals_suppressed"]
        self.assertEqual(len(written), burst, flooded)
        self.assertEqual([e["suppressed"] for e in summaries], [flood - burst], summaries)
        self.assertIn(f"auth_failed: {flood - burst}", summaries[0]["reason"])
        self.assertEqual(len(flooded), burst + 1, "a bounded number of records, whatever the flood's size")
        self.assertEqual(events[-1]["event"], "master_stopped")
        self.assertLess(events.index(summaries[0]), len(events) - 1, "the summary comes before the last record")

        self.assertEqual([e["slave"] for e in events if e["event"] == "auth_failed" and peer(e) == "127.0.0.3"], ["other"])
        truncated = [e for e in events if e["event"] == "frame_truncated"]
        self.assertEqual(len(truncated), 1, truncated)
        self.assertEqual(peer(truncated[0]), "127.0.0.4")
        self.assertEqual((truncated[0]["bytes_received"], truncated[0]["bytes_expected"]), (20, len(hello)))

        # The legitimate slaves' records are all there.
        names = collections.Counter(e["event"] for e in events)
        self.assertEqual((names["restart_started"], names["restart_completed"]), (1, 1))
        self.assertEqual(names["restart_pair_completed"], 2)
        connected = {e["slave"] for e in events if e["event"] == "slave_connected"}
        self.assertEqual(connected, {"s0-g1", "s1-g1", "s0-g2", "s1-g2"})
        self.assertEqual(names["slave_retired"], 4)  # two by the restart, two at the stop
        self.assertEqual(names["shard_granted"], 4)
        self.assertEqual(names["migration_completed"], 4)

        # Lifecycle events (refusals included) go to stderr as well, one line each, with their seq.
        lifecycle = documented_stderr_events()
        expected = sorted((e["seq"], e["event"]) for e in events if e["event"] in lifecycle)
        self.assertEqual(sorted(stderr), expected)
        print(f"\n{len(expected)} lifecycle records, each on stderr once; {flood} wrong secrets from one peer "
              f"in {len(flooded)} records")
        for event in ("master_started", "slave_connected", "restart_started", "restart_completed",
                      "slave_exited", "auth_failed", "frame_truncated", "refusals_suppressed", "master_stopped"):
            self.assertIn(event, [name for _, name in stderr])


if __name__ == "__main__":
    unittest.main(verbosity=2)
