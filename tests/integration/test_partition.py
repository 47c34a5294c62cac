#!/usr/bin/python3
"""A slave cut off by the network (nftables dropping everything in its network namespace) is
treated like a hung one: missed heartbeats, fenced (killed: the master can still reach its
process), its shards resumed from their checkpoints on a spare. Needs root for network namespaces;
without them the test is skipped, saying so."""
import time
import unittest

import netns
from support import Fleet, assert_single_owners, free_port

LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


@unittest.skipUnless(netns.available(), "network namespaces are not available here (needs root)")
class Partition(unittest.TestCase):
    def test_a_partitioned_slave_is_fenced_and_its_shards_resume_elsewhere(self):
        net = netns.Network(["slot0", "slot1", "slotspare"])
        fleet = None
        try:
            fleet = Fleet(shards=8, slaves=2, rate=200, listen=f"{net.host}:{free_port()}", gateway_host=net.host,
                          wrapper=net.wrapper(),
                          settings={"heartbeat": {"interval": "50ms", "misses": 4}, "slaves": {"spares": 1}})
            master = fleet.master
            master.start()
            master.wait_for(lambda s: s["shards_running"] == 8 and s["shards_checkpointed"] == 8
                            and any(x["phase"] == "ready" for x in s["slaves"]), timeout=LIVENESS,
                            what="a running fleet with a ready spare")
            cut_at = time.time()
            net.drop("slot0", 100)
            status = master.wait_for(lambda s: s["shards_running"] == 8 and all(
                not sh["owner"].startswith("s0-") for sh in s["shards"]), timeout=LIVENESS, what="slot 0's shards to move")
            moved_in = time.time() - cut_at
            assert_single_owners(self, status)
            lost = [e for e in master.events("slave_lost") if e["slave"] == "s0-g1"]
            self.assertEqual([e["reason"] for e in lost], ["heartbeat_timeout"])
            self.assertTrue(master.events("spare_promoted"))
            net.heal("slot0")
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
        finally:
            if fleet:
                fleet.close()
            net.close()
        self.assertEqual((report["lost"], report["duplicated"], report["overlaps"], report["checksum_mismatches"]),
                         (0, 0, 0, 0), report)
        # How fast is the machine's business (tests/bench/resilience measures it): printed, not judged.
        print(f"\nslot 0 cut off; its shards processing on the spare after {moved_in * 1000:.0f} ms")


if __name__ == "__main__":
    unittest.main(verbosity=2)
