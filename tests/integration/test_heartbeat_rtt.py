#!/usr/bin/python3
"""Protocol 1.3 against real processes: `status --json` shows each slave's connection address and the
heartbeat round trip the master measured from the slave's echo, and after a rolling restart every
migration_completed carries the pause the slaves measured themselves (slave_pause_ms), next to the
master's own pause_ms."""
import ipaddress
import unittest

from support import Fleet, assert_single_owners


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


if __name__ == "__main__":
    unittest.main()
