#!/usr/bin/python3
"""Slow and malicious peers: connections that say nothing, one that dribbles a byte at a time, and
a flood of thousands of connections. The master keeps serving its real slaves — shards keep
running, events keep being processed, the CLI answers — refuses or times out the rest, and logs
what it refused without drowning its log."""
import resource
import socket
import time
import unittest

from fake_slave import frame
from support import Fleet, assert_single_owners


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

            # During the flood: the CLI answers promptly and the slaves keep working.
            worst = 0.0
            dribbling_since = time.monotonic()
            cut_after = None
            for _ in range(15):
                started = time.monotonic()
                status = master.status()
                worst = max(worst, time.monotonic() - started)
                if cut_after is None:
                    try:
                        dribbler.send(bytes([next(dribble)]))
                    except (BrokenPipeError, ConnectionResetError):
                        cut_after = time.monotonic() - dribbling_since
                time.sleep(0.1)
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1"])
            self.assertLess(worst, 1.0, "the master stopped answering during the flood")
            self.assertGreater(fleet.gateway.report()["processed"], processed + 8 * 200)

            # The dribbler is cut at the handshake deadline (1 s), the idle ones too.
            self.assertIsNotNone(cut_after, "the dribbler was never cut off")
            self.assertGreaterEqual(cut_after, 0.9)
            time.sleep(0.5)
            for s in idle + flood + [dribbler]:
                s.close()
            time.sleep(1.2)  # the last records of the flood are logged a second later

            out = master.cli("restart", "--wait")  # business as usual
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            events = master.events()
        refused = [e for e in events if e["event"] == "connection_refused"]
        timeouts = [e for e in events if e["event"] == "handshake_timeout"]
        self.assertGreaterEqual(sum(e["count"] for e in refused), 1800)
        self.assertGreaterEqual(sum(e["count"] for e in timeouts), 50)
        self.assertLess(len(refused) + len(timeouts), 20, "the log must not drown in a flood")
        self.assertFalse([e for e in events if e["event"] == "slave_lost"])
        print(f"\n{sum(e['count'] for e in refused)} connections refused in {len(refused)} records, "
              f"{sum(e['count'] for e in timeouts)} handshakes timed out in {len(timeouts)}; "
              f"slowest status during the flood {worst * 1000:.0f} ms")


if __name__ == "__main__":
    unittest.main(verbosity=2)
