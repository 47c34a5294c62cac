#!/usr/bin/python3
"""The master goes away and comes back: the slaves keep running their shards the whole time,
reconnect to the new master and report their shards with their epochs, and the new master adopts
them instead of starting over — then goes on to replace them in a rolling restart."""
import os
import time
import unittest
from unittest import mock

from support import Fleet, assert_single_owners, free_port


class MasterRestart(unittest.TestCase):
    def away_and_back(self, fleet, go_away):
        """The master goes away (`go_away`), the shards keep running without it, and the next
        master adopts the same slaves with the same table. Returns the pids of the slaves."""
        master, gateway = fleet.master, fleet.gateway
        before = master.wait_running()
        table = {s["shard"]: (s["owner"], s["epoch"]) for s in before["shards"]}
        pids = sorted(s["pid"] for s in before["slaves"])
        go_away(master)
        processed = gateway.report()["processed"]
        time.sleep(0.4)
        self.assertGreater(gateway.report()["processed"], processed + before["shard_count"] * 200 * 0.2,
                           "the shards kept running without a master")
        self.assertTrue(all(os.path.exists(f"/proc/{pid}") for pid in pids))
        master.start()
        after = master.wait_running(timeout=10)
        assert_single_owners(self, after)
        self.assertEqual({s["shard"]: (s["owner"], s["epoch"]) for s in after["shards"]}, table)
        self.assertEqual(sorted(s["pid"] for s in after["slaves"]), pids, "adopted, not respawned")
        return pids

    def test_slaves_survive_and_are_adopted(self):
        # A fixed port: the slaves reconnect to where the master was.
        with Fleet(shards=16, slaves=2, rate=200, listen=f"127.0.0.1:{free_port()}") as fleet:
            master, gateway = fleet.master, fleet.gateway
            pids = self.away_and_back(fleet, lambda m: m.crash())
            names = [e["event"] for e in master.events()]
            self.assertEqual(names.count("slave_adopted"), 2)
            self.assertEqual(names.count("shard_adopted"), 16)

            # The new master can replace slaves it did not start.
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            final = master.wait_running()
            assert_single_owners(self, final)
            self.assertTrue(all(s["id"].endswith("-g2") for s in final["slaves"]), final["slaves"])
            for pid in pids:
                deadline = time.monotonic() + 5
                while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertFalse(os.path.exists(f"/proc/{pid}"), "an adopted slave outlived its retirement")
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_a_slave_dying_while_the_master_is_down_resumes_from_the_stored_checkpoint(self):
        # The master keeps each shard's last state on disk: when a slave dies while the master is
        # down, the restarted master resumes its shards from there instead of starting them over.
        import signal
        with Fleet(shards=8, slaves=2, rate=200, listen=f"127.0.0.1:{free_port()}") as fleet:
            master, gateway = fleet.master, fleet.gateway
            before = master.wait_for(lambda s: s["shards_running"] == 8 and s["shards_checkpointed"] == 8)
            time.sleep(0.3)  # let a few more checkpoints be written behind
            victim = next(s for s in before["slaves"] if s["slot"] == 1)
            master.crash()
            os.kill(victim["pid"], signal.SIGKILL)
            master.start()
            after = master.wait_for(lambda s: s["shards_running"] == 8 and s["restart"] is None
                                    and all(sh["owner"] != victim["id"] for sh in s["shards"]), timeout=15)
            assert_single_owners(self, after)
            recovered = master.events("shard_recovered")
            self.assertEqual(len(recovered), 4, "the dead slave's four shards resume from their stored states")
            self.assertEqual(master.events("shard_granted")[8:], [], "nothing started over after the crash")
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_a_master_stopped_with_leave_slaves_exits_and_the_next_one_adopts_them(self):
        # An upgrade of the master itself: it goes, the slaves stay with their shards, the next
        # master adopts them. No shard changes hands, so no shard pauses.
        with Fleet(shards=16, slaves=2, rate=200, listen=f"127.0.0.1:{free_port()}") as fleet:
            master, gateway = fleet.master, fleet.gateway
            master.wait_running()
            handoffs = gateway.report()["handoffs"]

            def leave(m):
                out = m.cli("stop", "--leave-slaves")
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("detaching", out.stdout)
                self.assertEqual(m.process.wait(10), 0)
                last = m.events()[-1]
                self.assertEqual((last["event"], last["count"]), ("master_detached", 2))

            self.away_and_back(fleet, leave)
            self.assertEqual(len(master.events("slave_adopted")), 2)
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        self.assertEqual(report["handoffs"], handoffs, "no shard changed hands")
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_leave_slaves_during_a_restart_finishes_the_moves_in_flight_first(self):
        # Each resume on a new slave takes 100 ms, so that the stop lands in the middle of the moves.
        slow = {"MESHMASTER_FAILPOINTS": "g2/slave.resume.before_callback=delay:100"}
        with mock.patch.dict(os.environ, slow), Fleet(shards=32, slaves=2, rate=100, concurrency=2, listen=f"127.0.0.1:{free_port()}") as fleet:
            master, gateway = fleet.master, fleet.gateway
            master.wait_running()
            self.assertEqual(master.cli("restart").returncode, 0)
            master.wait_for(lambda s: s["restart"] is not None and s["restart"]["migrations_done"] > 0, timeout=15,
                            what="the restart moving shards")
            self.assertEqual(master.cli("stop", "--leave-slaves").returncode, 0)
            self.assertEqual(master.process.wait(15), 0)
            names = [e["event"] for e in master.events()]
            self.assertEqual(names[-1], "master_detached")
            self.assertIn("restart_failed", names, "the restart ends, recorded as such, before the master goes")
            started = {e["migration"] for e in master.events("migration_started")}
            ended = {e["migration"] for e in master.events("migration_completed", "migration_rolled_back",
                                                                  "migration_failed")}
            self.assertEqual(started, ended, "every move in flight ended before the master left")

            master.start()
            after = master.wait_for(lambda s: s["shards_running"] == 32 and s["restart"] is None
                                    and len(s["slaves"]) == 2 and all(x["slot"] is not None for x in s["slaves"]),
                                    timeout=20, what="the fleet converged after adoption")
            assert_single_owners(self, after)
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_after_a_clean_stop_nothing_waits_for_adoption(self):
        with Fleet(shards=4, slaves=1, rate=50) as fleet:
            fleet.master.wait_running()
            self.assertEqual(fleet.master.stop(), 0)
            fleet.master.start()
            started = time.monotonic()
            fleet.master.wait_running()
            self.assertLess(time.monotonic() - started, 0.9, "a clean stop must not leave an adoption window")
            self.assertEqual(fleet.master.events("adoption_started"), [])



class Replay(unittest.TestCase):
    def test_the_event_log_replays_to_the_live_table(self):
        import json
        import os
        import signal
        import subprocess
        with Fleet(shards=16, slaves=2, rate=200, settings={"slaves": {"spares": 1}}) as fleet:
            master = fleet.master
            master.wait_for(lambda s: s["shards_running"] == 16 and s["shards_checkpointed"] == 16)
            for _ in range(2):
                self.assertEqual(master.cli("restart", "--wait").returncode, 0)
            status = master.wait_for(lambda s: s["shards_checkpointed"] == 16 and s["shards_running"] == 16
                                     and s["restart"] is None)
            victim = next(s for s in status["slaves"] if s["slot"] == 1)
            os.kill(victim["pid"], signal.SIGKILL)  # recovery onto the spare
            live = master.wait_for(lambda s: s["shards_running"] == 16 and all(
                sh["owner"] != victim["id"] for sh in s["shards"]))
            out = subprocess.run([master.binary, "replay", "--log", master.event_log, "--shards", "16", "--json"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            replayed = json.loads(out.stdout)
        self.assertEqual([(s["owner"], s["epoch"]) for s in replayed["shards"]],
                         [(s["owner"], s["epoch"]) for s in live["shards"]])
        self.assertEqual(replayed["open_migrations"], [])
        self.assertFalse(replayed["clean_stop"])  # still running when it was read


if __name__ == "__main__":
    unittest.main(verbosity=2)
