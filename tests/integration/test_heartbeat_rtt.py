#!/usr/bin/python3
"""Protocol 1.3 against real processes: `status --json` shows each slave's connection address and the
heartbeat round trip the master measured from the slave's echo, and after a rolling restart every
migration_completed carries the pause the slaves measured themselves (slave_pause_ms), next to the
master's own pause_ms."""
import ipaddress
import time
import unittest

from fake_slave import FakeSlave
from support import Fleet, assert_single_owners

SECRET = "demo-secret-0123456789"  # the demo fleet's (examples/demo/fleet.py)


class Measurements(unittest.TestCase):
    def test_round_trip_address_and_slave_measured_pause(self):
        with Fleet(shards=16, slaves=4, rate=100, concurrency=4) as fleet:
            master = fleet.master
            master.wait_running()
            # A round trip needs a heartbeat each way (every 250 ms) and the echo of one of them.
            status = master.wait_for(lambda s: all(x["heartbeat_rtt_ms"] is not None for x in s["slaves"]),
                                     timeout=30, what="every slave's heartbeat_rtt_ms")
            self.assertEqual(len(status["slaves"]), 4)
            for slave in status["slaves"]:
                host, port = slave["address"].rsplit(":", 1)
                # The bots connect over loopback: the master sees them from a loopback address.
                self.assertTrue(ipaddress.ip_address(host.strip("[]")).is_loopback, slave)
                self.assertTrue(1 <= int(port) <= 65535, slave)
                rtt = slave["heartbeat_rtt_ms"]
                # Positive: the trip takes time. Below the silence after which a slave is lost
                # (250 ms x 8): a slave that slow would not be listed as running.
                self.assertGreater(rtt, 0, slave)
                self.assertLess(rtt, 2000, slave)

            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            after = master.wait_running()
            assert_single_owners(self, after)
            # The new slaves are connected from loopback too, with new ports.
            self.assertTrue(all(s["address"] and s["id"].endswith("g2") for s in after["slaves"]), after["slaves"])
            old_ports = {s["address"] for s in status["slaves"]}
            self.assertFalse(old_ports & {s["address"] for s in after["slaves"]})
            completed = master.events("migration_completed")

        self.assertEqual(len(completed), 16)
        for e in completed:
            self.assertIn("slave_pause_ms", e, e)
            # Both slaves read the same host's wall clock: no offset between them. The slaves' pause
            # starts after the master sent stop_shard and ends before it read resumed, so it is
            # within the master's pause; the margin is for the wall clock being stepped meanwhile.
            self.assertGreaterEqual(e["slave_pause_ms"], 0, e)
            self.assertLessEqual(e["slave_pause_ms"], e["pause_ms"] + 1000, e)


class WrittenFromTheDocument(unittest.TestCase):
    """A slave written in Python from docs/protocol.md alone (fake_slave.py) echoes the master's
    heartbeats as the document says, and the master's answer follows the document too."""

    def test_a_python_1_3_slave_measures_and_is_measured(self):
        with Fleet(shards=4, slaves=1, rate=50) as fleet:
            master = fleet.master
            address = master.wait_running()["listen"]
            fake = FakeSlave(address, "py-echo", SECRET, minor=3)
            try:
                self.assertEqual(fake.handshake()[0], "welcome")
                sent = {}  # our seq -> time.monotonic() when sent
                _, first = fake.receive_until("heartbeat")
                received_at = time.monotonic()
                self.assertNotIn("echo_seq", first, "we had sent no heartbeat yet")
                sent[1] = time.monotonic()
                fake.send("heartbeat", {"seq": 1, "progress": 1, "echo_seq": first["seq"],
                                        "echo_delay_us": int((sent[1] - received_at) * 1e6)})
                # Its next heartbeats echo ours once it has read it (normally the very next one).
                for _ in range(20):
                    _, second = fake.receive_until("heartbeat")
                    now = time.monotonic()
                    if "echo_seq" in second:
                        break
                # The master echoes our newest heartbeat, and held it no longer than it took to answer.
                self.assertEqual(second["echo_seq"], 1, second)
                self.assertLessEqual(second["echo_delay_us"], (now - sent[1]) * 1e6, second)
                our_rtt_ms = ((now - sent[1]) * 1e6 - second["echo_delay_us"]) / 1000
                self.assertGreater(our_rtt_ms, 0)
                # Our echo of its second heartbeat gives the master its round trip to us.
                held = time.monotonic() - now
                fake.send("heartbeat", {"seq": 2, "progress": 2, "echo_seq": second["seq"],
                                        "echo_delay_us": int(held * 1e6)})
                status = master.wait_for(
                    lambda s: any(x["id"] == "py-echo" and x["heartbeat_rtt_ms"] is not None for x in s["slaves"]),
                    timeout=10, what="the python slave's heartbeat_rtt_ms")
                mine = next(x for x in status["slaves"] if x["id"] == "py-echo")
                self.assertGreater(mine["heartbeat_rtt_ms"], 0, mine)
                self.assertEqual(mine["address"].rsplit(":", 1)[0], "127.0.0.1", mine)
            finally:
                fake.close()

    def test_a_1_2_slave_gets_no_echo(self):
        with Fleet(shards=4, slaves=1, rate=50) as fleet:
            master = fleet.master
            address = master.wait_running()["listen"]
            fake = FakeSlave(address, "py-old", SECRET, minor=2)
            try:
                self.assertEqual(fake.handshake()[0], "welcome")
                fake.send("heartbeat", {"seq": 1, "progress": 1})
                for _ in range(2):  # the second answers a heartbeat of ours for sure
                    _, hb = fake.receive_until("heartbeat")
                    self.assertTrue({"seq"} <= set(hb) <= {"seq", "progress"}, hb)
                status = master.status()
                mine = next(x for x in status["slaves"] if x["id"] == "py-old")
                self.assertIsNone(mine["heartbeat_rtt_ms"])
                self.assertTrue(mine["address"].startswith("127.0.0.1:"), mine)
            finally:
                fake.close()


if __name__ == "__main__":
    unittest.main()
