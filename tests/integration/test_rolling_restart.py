#!/usr/bin/python3
"""Rolling restarts with the gateway and real bots: over ten restarts, triggered by SIGUSR2 and by
`meshmaster restart --wait`, no event is lost or processed twice, every handoff carries the state
intact, and no shard ever has two owners."""
import os
import signal
import time
import unittest
from unittest import mock

from support import Fleet, assert_single_owners, assert_exactly_once


class RollingRestarts(unittest.TestCase):
    def test_ten_restarts_lose_nothing(self):
        with Fleet(shards=64, slaves=4, rate=300, concurrency=8, state_padding=2048) as fleet:
            master = fleet.master
            first = master.wait_running()
            self.assertEqual(sorted(s["id"] for s in first["slaves"]), ["s0-g1", "s1-g1", "s2-g1", "s3-g1"])
            for n in range(10):
                if n % 2 == 0:
                    done = first["restarts_completed"]
                    master.signal(signal.SIGUSR2)
                    first = master.wait_for(lambda s: s["restarts_completed"] > done and s["restart"] is None,
                                            timeout=60, what="SIGUSR2 restart")
                else:
                    out = master.cli("restart", "--wait")
                    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                    self.assertIn("completed", out.stdout)
                    first = master.wait_running()
                assert_single_owners(self, first)
                generation = f"g{n + 2}"
                self.assertTrue(all(s["id"].endswith(generation) for s in first["slaves"]), first["slaves"])
                self.assertTrue(all(sh["epoch"] == n + 2 for sh in first["shards"]))
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
            events = master.events()

        assert_exactly_once(self, report)
        self.assertEqual(report["takeovers"], 0)
        self.assertEqual(report["handoffs"], 10 * 64)
        names = [e["event"] for e in events]
        self.assertEqual(names.count("restart_completed"), 10)
        self.assertEqual(names.count("migration_completed"), 10 * 64)
        self.assertEqual(names.count("migration_failed") + names.count("migration_rolled_back"), 0)
        self.assertEqual(names.count("slave_retired"), 40)
        self.assertEqual(names.count("slave_killed"), 0, "every old slave exited on its own")
        # Every migration ends in exactly one terminal record.
        started = {e["migration"] for e in events if e["event"] == "migration_started"}
        ended = [e["migration"] for e in events if e["event"] in ("migration_completed", "migration_rolled_back", "migration_failed")]
        self.assertEqual(sorted(started), sorted(ended))
        # The event log is ordered and gap-free.
        self.assertEqual([e["seq"] for e in events], list(range(events[0]["seq"], events[0]["seq"] + len(events))))

    def test_large_states_travel_in_chunks(self):
        # 3 MiB of state per shard: more than one 1 MiB chunk each way, byte-exact (the bot checks
        # the padding it receives; the gateway checks the checksum).
        with Fleet(shards=8, slaves=2, rate=200, concurrency=4, state_padding=3 << 20) as fleet:
            fleet.master.wait_running()
            out = fleet.master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
            stopped = fleet.master.events("shard_stopped")
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))
        self.assertEqual(report["handoffs"], 8)
        self.assertTrue(all(e["state_bytes"] == 28 + (3 << 20) for e in stopped), stopped[:2])


class SlowNotHung(unittest.TestCase):
    """The hang detector against slaves that work through large states: one whose states crawl out
    is slow, not hung, and completes its handoffs; one that stops sending fails the restart."""

    def test_a_slave_crawling_through_its_states_completes_its_handoffs(self):
        # The old slaves write every state chunk 300 ms after the one before: their 3 MiB states
        # (3 chunks each, a 4-shard batch of stop states or checkpoints at a time) take seconds to
        # leave, and the heartbeats queued behind them reach the master later than the 2 s the
        # hang detector waits (heartbeat.interval 250 ms x 8). The chunks still arriving are
        # progress. The stop timeout is out of the way: this is about the hang detector.
        crawl = {"MESHMASTER_FAILPOINTS": "g1/slave.state_chunk.before_write=delay:300"}
        with mock.patch.dict(os.environ, crawl), Fleet(shards=8, slaves=2, rate=200, concurrency=4,
                                                       state_padding=3 << 20,
                                                       settings={"timeouts": {"stop": "120s"}}) as fleet:
            master = fleet.master
            master.wait_running(timeout=120)
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("completed", out.stdout)
            events = master.events()
            self.assertEqual([(e["slave"], e["reason"]) for e in events if e["event"] == "slave_lost"], [])
            self.assertEqual(fleet.gateway.drain(timeout_ms=60000), "drained")
            report = fleet.gateway.report()
            with open(master.log_path) as log:
                crawled = log.read().count("failpoint slave.state_chunk.before_write hit")
        self.assertGreaterEqual(crawled, 8 * 3, "the old slaves' states did not crawl")
        names = [e["event"] for e in events]
        self.assertEqual((names.count("restart_completed"), names.count("migration_completed")), (1, 8))
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))
        self.assertEqual(report["handoffs"], 8)

    def test_a_slave_that_stops_sending_mid_handoff_fails_the_restart(self):
        # Every slave's chunks crawl as above; the first new slave is frozen (SIGSTOP) once it has
        # taken over a shard, with its states still trickling out. Nothing arrives from it any
        # more: it is lost, the restart fails and its shards go back to the old slave.
        crawl = {"MESHMASTER_FAILPOINTS": "slave.state_chunk.before_write=delay:300"}
        with mock.patch.dict(os.environ, crawl), Fleet(shards=8, slaves=2, rate=200, concurrency=1,
                                                       state_padding=3 << 20) as fleet:
            master = fleet.master
            master.wait_running(timeout=120)
            self.assertEqual(master.cli("restart").returncode, 0)
            deadline = time.monotonic() + 120
            while not [e for e in master.events("migration_completed") if e["slave"] == "s0-g2"]:
                self.assertLess(time.monotonic(), deadline, "the restart never moved a shard")
                time.sleep(0.01)
            frozen = next(s for s in master.status()["slaves"] if s["id"] == "s0-g2")
            os.kill(frozen["pid"], signal.SIGSTOP)
            status = master.wait_for(lambda s: s["restart"] is None and s["restarts_failed"] == 1
                                     and s["shards_running"] == 8, timeout=120, what="the failed restart")
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1"])
            self.assertEqual(fleet.gateway.drain(timeout_ms=60000), "drained")
            report = fleet.gateway.report()
            events = master.events()
        lost = [(e["slave"], e["reason"]) for e in events if e["event"] == "slave_lost"]
        self.assertEqual(len(lost), 1, lost)
        self.assertEqual(lost[0][0], "s0-g2")
        self.assertIn(lost[0][1], ("heartbeat_timeout", "progress_stalled"))
        failed = [e for e in events if e["event"] == "restart_failed"]
        self.assertEqual(len(failed), 1)
        self.assertIn("s0-g2", failed[0]["reason"])
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"], report["overlaps"]),
                         (0, 0, 0, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
