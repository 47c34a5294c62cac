#!/usr/bin/python3
"""The master goes away and comes back: the slaves keep running their shards the whole time,
reconnect to the new master and report their shards with their epochs, and the new master adopts
them instead of starting over — then goes on to replace them in a rolling restart."""
import collections
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
from unittest import mock

from support import Fleet, assert_single_owners, free_port
from fleet import build_dir  # noqa: E402 (support puts it on the path)

TERMINAL = ("restart_completed", "restart_failed", "restart_abandoned")


def restart_endings(events):
    """restart id -> the terminal records it got, for every restart_started in `events`."""
    endings = {e["restart"]: [] for e in events if e["event"] == "restart_started"}
    for e in events:
        if e["event"] in TERMINAL:
            endings.setdefault(e["restart"], []).append(e["event"])
    return endings


class MasterRestart(unittest.TestCase):
    def away_and_back(self, fleet, go_away):
        """The master goes away (`go_away`), the shards keep running without it, and the next
        master adopts the same slaves with the same table. Returns the pids of the slaves."""
        master, gateway = fleet.master, fleet.gateway
        before = master.wait_running()
        table = {s["shard"]: (s["owner"], s["epoch"]) for s in before["shards"]}
        pids = sorted(s["pid"] for s in before["slaves"])
        go_away(master)
        # The shards keep running without a master: events go on being processed (how many in a
        # given time depends on the machine, so wait for some, within a liveness limit).
        processed = gateway.report()["processed"]
        deadline = time.monotonic() + 60
        while gateway.report()["processed"] <= processed + before["shard_count"] * 10:
            self.assertLess(time.monotonic(), deadline, "the shards stopped running without a master")
            time.sleep(0.05)
        self.assertTrue(all(os.path.exists(f"/proc/{pid}") for pid in pids))
        master.start()
        after = master.wait_running(timeout=60)
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
                deadline = time.monotonic() + 60
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
                                    and all(sh["owner"] != victim["id"] for sh in s["shards"]), timeout=60)
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
                self.assertEqual(m.process.wait(60), 0)
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
            master.wait_for(lambda s: s["restart"] is not None and s["restart"]["migrations_done"] > 0, timeout=60,
                            what="the restart moving shards")
            self.assertEqual(master.cli("stop", "--leave-slaves").returncode, 0)
            self.assertEqual(master.process.wait(60), 0)
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
                                    timeout=60, what="the fleet converged after adoption")
            assert_single_owners(self, after)
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_a_master_killed_mid_restart_leaves_it_to_the_next_which_closes_it(self):
        # The first master dies by SIGKILL (the failpoint's abort) right after it sent the restart's
        # first resume: in the middle of the restart, however fast or slow the machine.
        fleet = Fleet(shards=8, slaves=2, rate=100, listen=f"127.0.0.1:{free_port()}")
        try:
            master, gateway = fleet.master, fleet.gateway
            with mock.patch.dict(os.environ, {"MESHMASTER_FAILPOINTS": "master.migrate.after_resume_sent=abort"}):
                master.start()  # only this master runs with the failpoint armed
            master.wait_running()
            self.assertEqual(master.cli("restart").returncode, 0)
            self.assertEqual(master.process.wait(30), -signal.SIGKILL)
            killed = master.events()
            self.assertEqual([e["event"] for e in killed if e["event"] in TERMINAL], [])
            (restart,) = [e["restart"] for e in killed if e["event"] == "restart_started"]
            self.assertIn("shard_resuming", [e["event"] for e in killed])

            master.start()
            after = master.wait_for(lambda s: s["shards_running"] == 8 and s["restart"] is None
                                    and len(s["slaves"]) == 2 and all(x["slot"] is not None for x in s["slaves"]),
                                    timeout=30, what="the fleet converged after adoption")
            assert_single_owners(self, after)
            events = master.events()
            self.assertEqual(restart_endings(events), {restart: ["restart_abandoned"]})
            abandoned = next(e for e in events if e["event"] == "restart_abandoned")
            self.assertEqual(events[events.index(abandoned) - 1]["event"], "master_started")
            self.assertIn("killed mid-restart", abandoned["reason"])

            # The new master restarts the fleet for real; every restart still ends exactly once.
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            endings = restart_endings(master.events())
            self.assertEqual(len(endings), 2)
            self.assertTrue(all(len(ends) == 1 for ends in endings.values()), endings)
            replay = subprocess.run([master.binary, "replay", "--log", master.event_log, "--shards", "8"],
                                    capture_output=True, text=True, timeout=30)
            self.assertEqual(replay.returncode, 0, replay.stdout + replay.stderr)
            self.assertEqual(gateway.drain(), "drained")
            report = gateway.report()
        finally:
            fleet.close()
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0))

    def test_a_master_stopped_at_once_mid_restart_ends_the_restart_first(self):
        # The first new slave freezes (SIGSTOP) when its first resume arrives, and the master gives
        # it all the time in the world: the restart cannot end before the stop.
        frozen = {"MESHMASTER_FAILPOINTS": "g2/slave.resume.before_callback=hang"}
        patient = {"timeouts": {"resume": "1h"}, "heartbeat": {"misses": 1000}}
        with mock.patch.dict(os.environ, frozen), Fleet(shards=8, slaves=2, rate=100, concurrency=1,
                                                        settings=patient) as fleet:
            master = fleet.master
            master.wait_running()
            self.assertEqual(master.cli("restart").returncode, 0)
            deadline = time.monotonic() + 30  # a liveness limit only
            while not master.events("shard_resuming") and time.monotonic() < deadline:
                time.sleep(0.05)
            master.signal(signal.SIGTERM)
            # The graceful stop waits for the frozen move; the second signal stops at once (sent once
            # the first was handled: two pending signals would merge into one).
            while not master.events("master_stopping") and time.monotonic() < deadline + 30:
                time.sleep(0.05)
            master.signal(signal.SIGTERM)
            self.assertEqual(master.process.wait(30), 0)
            events = master.events()
        self.assertEqual(events[-1]["event"], "master_stopped")
        (ends,) = restart_endings(events).values()
        self.assertEqual(ends, ["restart_failed"])
        failed = next(e for e in events if e["event"] == "restart_failed")
        self.assertIn("immediately", failed["reason"])  # after the first signal's graceful "master stopping"

    def test_after_a_clean_stop_nothing_waits_for_adoption(self):
        with Fleet(shards=4, slaves=1, rate=50) as fleet:
            fleet.master.wait_running()
            self.assertEqual(fleet.master.stop(), 0)
            fleet.master.start()
            fleet.master.wait_running()
            # The second master's log: started, and done adopting at once, with no window opened.
            records = fleet.master.events()
            second = [n for n, r in enumerate(records) if r["event"] == "master_started"][1]
            self.assertEqual(records[second + 1]["event"], "adoption_finished", records[second:second + 3])
            self.assertEqual(fleet.master.events("adoption_started"), [],
                             "a clean stop must not leave an adoption window")



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
        self.assertEqual(replayed["unterminated_restarts"], [])
        self.assertFalse(replayed["clean_stop"])  # still running when it was read

    def test_replay_reports_a_restart_without_its_terminal_record(self):
        binary = os.path.join(build_dir(), "master", "meshmaster")
        first = [{"seq": 1, "event": "master_started", "generation": 1, "count": 4},
                 {"seq": 2, "event": "adoption_finished"},
                 {"seq": 3, "event": "restart_started", "restart": 77, "generation": 2, "count": 2}]
        later_master = [{"seq": 4, "event": "master_started", "generation": 2, "count": 4},
                        {"seq": 5, "event": "adoption_started", "duration_ms": 2000}]
        adopted = [{"seq": 6, "event": "adoption_finished"}]

        def replay(records, *flags):
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            try:
                return subprocess.run([binary, "replay", "--log", f.name, "--shards", "4", *flags],
                                      capture_output=True, text=True, timeout=30)
            finally:
                os.unlink(f.name)

        # Still running (the master, or the next one's adoption window): in progress, not an error.
        for records in (first, first + later_master):
            out = replay(records)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("restart 77 in progress", out.stdout)
        # The next master finished adopting and never closed it: an error naming it.
        out = replay(first + later_master + adopted)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("restart 77 (restart_started at seq 3) has no terminal record", out.stderr)
        out = replay(first + later_master + adopted, "--json")
        self.assertEqual(out.returncode, 1)
        self.assertEqual([(u["restart"], u["started_seq"]) for u in json.loads(out.stdout)["unterminated_restarts"]],
                         [(77, 3)])
        # Stopped with it open: an error too; closed by the next master: fine.
        self.assertEqual(replay(first + [{"seq": 4, "event": "master_stopped"}]).returncode, 1)
        closed = [{"seq": 5, "event": "restart_abandoned", "restart": 77, "reason": "killed mid-restart"}]
        self.assertEqual(replay(first + later_master[:1] + closed + adopted).returncode, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
