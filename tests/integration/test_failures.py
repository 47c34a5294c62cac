#!/usr/bin/python3
"""Failures during rolling restarts, and bad input from slaves.

- the old slave SIGKILLed mid-migration: its remaining shards start fresh on the new slave, the
  lost state is logged, every shard ends with one owner;
- the new slave SIGKILLed mid-migration: its shards go back to the old slave (rollback), the restart
  is logged as failed, every shard ends with one owner;
- a wrong secret, an oversized frame, garbage, an unknown event, a stale epoch: each refused with a
  logged reason, while the real slaves carry on.
"""
import json
import os
import signal
import struct
import time
import unittest

from fake_slave import FakeSlave, frame
from support import Fleet, assert_single_owners, set_command

SECRET = "demo-secret-0123456789"
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


def pid_of(status, slave_id):
    return next(s["pid"] for s in status["slaves"] if s["id"] == slave_id)


class KilledMidMigration(unittest.TestCase):
    def restart_and_wait_for_moves(self, fleet, moved):
        """Starts a restart and returns once `moved` shards of slot 0 completed their move."""
        master = fleet.master
        master.signal(signal.SIGUSR2)
        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline:
            done = [e for e in master.events("migration_completed") if e["slave"] == "s0-g2"]
            if len(done) >= moved:
                return
            time.sleep(0.005)
        self.fail("the restart never started moving shards")

    def test_old_slave_killed(self):
        # One move at a time, each stop taking 40 ms: a wide window in the middle of slot 0's moves.
        # Every shard is checkpointed (at its new session, then every 5 s or 1,000 events), so the
        # shards it had not handed over yet resume from their checkpoints, and the gateway replays
        # what came after: exactly once, nothing lost.
        with Fleet(shards=16, slaves=2, rate=200, concurrency=1, bot_args=["--stop-delay-ms", "40"]) as fleet:
            master = fleet.master
            status = master.wait_for(lambda s: s["shards_checkpointed"] == 16 and s["shards_running"] == 16,
                                     what="every shard checkpointed")
            old = pid_of(status, "s0-g1")
            self.restart_and_wait_for_moves(fleet, 2)
            os.kill(old, signal.SIGKILL)
            status = master.wait_for(lambda s: s["restart"] is None and s["shards_running"] == 16, timeout=LIVENESS,
                                     what="the restart to finish without the old slave")
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g2", "s1-g2"])
            events = master.events()
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
        names = [e["event"] for e in events]
        self.assertIn("restart_completed", names)
        recovered = [e for e in events if e["event"] == "shard_recovered"]
        self.assertGreater(len(recovered), 0, "the shards not yet moved resumed from their checkpoints")
        self.assertFalse([e for e in events if e.get("state_lost")], "no state was lost")
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"], report["overlaps"]),
                         (0, 0, 0, 0))
        self.assert_one_terminal_per_migration(events)

    def test_old_slave_killed_without_checkpoints(self):
        # Without checkpoints the state of the shards not yet handed over dies with the old slave:
        # they start over on the new one, and the loss is logged as such.
        with Fleet(shards=16, slaves=2, rate=200, concurrency=1,
                   bot_args=["--stop-delay-ms", "40", "--checkpoint-ms", "0"]) as fleet:
            master = fleet.master
            status = master.wait_running()
            old = pid_of(status, "s0-g1")
            self.restart_and_wait_for_moves(fleet, 2)
            os.kill(old, signal.SIGKILL)
            status = master.wait_for(lambda s: s["restart"] is None and s["shards_running"] == 16, timeout=LIVENESS,
                                     what="the restart to finish without the old slave")
            assert_single_owners(self, status)
            events = master.events()
            # Events the dead slave's sessions left unprocessed can never be processed: they are
            # the lost state, and the gateway counts them as lost. Wait until every shard's current
            # session has committed all it was sent (however long a busy machine takes), then
            # what is still unprocessed is exactly that.
            self.assertEqual(fleet.gateway.command("pause"), "ok")
            deadline = time.monotonic() + LIVENESS
            while True:
                lagging = json.loads(fleet.gateway.command("lagging"))
                if all(shard["committed"] >= shard["emitted"] for shard in lagging.values()):
                    break
                self.assertLess(time.monotonic(), deadline, f"sessions still catching up: {lagging}")
                time.sleep(0.05)
            report = fleet.gateway.report()
        self.assertEqual(report["lost"], sum(shard["emitted"] - shard["processed"] for shard in lagging.values()))
        lost_state = [e for e in events if e["event"] == "shard_orphaned" and e.get("state_lost")]
        self.assertGreater(len(lost_state), 0, "the lost state is logged as such")
        self.assertTrue(all(e["slave"] == "s0-g1" for e in lost_state))
        self.assertEqual((report["duplicated"], report["overlaps"], report["checksum_mismatches"]), (0, 0, 0))
        self.assert_one_terminal_per_migration(events)

    def test_new_slave_killed(self):
        with Fleet(shards=16, slaves=2, rate=200, concurrency=1, bot_args=["--stop-delay-ms", "40"]) as fleet:
            master = fleet.master
            master.wait_running()
            self.restart_and_wait_for_moves(fleet, 2)
            os.kill(pid_of(master.status(), "s0-g2"), signal.SIGKILL)
            status = master.wait_for(lambda s: s["restart"] is None and s["shards_running"] == 16, timeout=LIVENESS,
                                     what="the rollback")
            assert_single_owners(self, status)
            # The restart stopped; the old slaves keep (or got back) their shards.
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1"])
            self.assertEqual(status["restarts_failed"], 1)
            events = master.events()
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
        names = [e["event"] for e in events]
        self.assertIn("restart_failed", names)
        self.assertIn("restart_pair_rolled_back", names)
        # Moves that had completed onto the dead slave resume from their handed-over state.
        self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"], report["overlaps"]),
                         (0, 0, 0, 0))
        self.assert_one_terminal_per_migration(events)

    def assert_one_terminal_per_migration(self, events):
        started = sorted(e["migration"] for e in events if e["event"] == "migration_started")
        ended = sorted(e["migration"] for e in events
                       if e["event"] in ("migration_completed", "migration_rolled_back", "migration_failed"))
        self.assertEqual(started, ended)


class ProcessFailures(unittest.TestCase):
    def test_unexpected_exit_is_replaced_at_once(self):
        with Fleet(shards=8, slaves=2, rate=200) as fleet:
            master = fleet.master
            status = master.wait_for(lambda s: s["shards_checkpointed"] == 8 and s["shards_running"] == 8,
                                     what="every shard checkpointed")
            victim = pid_of(status, "s1-g1")
            os.kill(victim, signal.SIGKILL)
            status = master.wait_for(lambda s: s["shards_running"] == 8 and all(x["id"] != "s1-g1" for x in s["slaves"]),
                                     timeout=LIVENESS, what="a replacement")
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1.1"])
            self.assertTrue(all(sh["epoch"] == 2 for sh in status["shards"] if sh["owner"] == "s1-g1.1"))
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
            self.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"]), (0, 0, 0),
                             "recovered from checkpoints: exactly once")
            events = master.events()
            exited = next(e for e in events if e["event"] == "slave_exited" and e["slave"] == "s1-g1")
            self.assertIn("SIGKILL", exited["reason"])
            respawn = next(e for e in events if e["event"] == "respawn_scheduled")
            self.assertEqual(respawn["duration_ms"], 0, "the first death is replaced at once")
            # Reaped: no zombie left behind.
            self.assertFalse(os.path.exists(f"/proc/{victim}"))
            # The slaves' output is in the master's log, tagged with their ids.
            with open(master.log_path) as log:
                self.assertIn('"component":"slave-output","slave":"s1-g1.1"', log.read())

    def test_crash_loop_backs_off(self):
        # limit_burst 0: no start limit, the backoff alone (the start limit is tested below).
        with Fleet(shards=2, slaves=1, rate=10,
                   settings={"respawn": {"backoff_min": "50ms", "backoff_max": "400ms", "limit_burst": 0}}) as fleet:
            master = fleet.master
            # A slave command that dies at once, every time.
            with open(master.config) as f:
                config = f.read()
            start = config.index("command = [")
            with open(master.config, "w") as f:
                f.write(config[:start] + 'command = ["/bin/false"]' + config[config.index("\n", start):])
            master.stop()
            master.start()
            deadline = time.monotonic() + LIVENESS  # a busy machine stretches the loop; the delays it logs do not change
            while len(master.events("respawn_scheduled")) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            events = master.events("respawn_scheduled", "slave_spawned")
        schedules = [e for e in events if e["event"] == "respawn_scheduled"]
        delays = [e["duration_ms"] for e in schedules]
        self.assertEqual(delays[:5], [0, 50, 100, 200, 400])
        self.assertTrue(all(d == 400 for d in delays[5:]), delays)
        # The respawns waited those delays, by the master's own monotonic clock (mono_ms): from
        # the first death to the spawn after the fifth, 0 + 50 + 100 + 200 + 400 ms at least. A
        # lower bound, which a slow machine only makes longer.
        fifth = schedules[4]
        spawn = next(e for e in events if e["event"] == "slave_spawned" and e["seq"] > fifth["seq"])
        self.assertGreaterEqual(spawn["mono_ms"] - schedules[0]["mono_ms"], sum(delays[:5]), (schedules[0], spawn))
        spawned = [e for e in events if e["event"] == "slave_spawned"]
        self.assertLess(len(spawned), len(schedules) + 3, "backing off, not fork-bombing")

    def test_a_slave_ignoring_shutdown_is_killed_at_the_deadline(self):
        with Fleet(shards=4, slaves=1, rate=100, bot_args=["--ignore-shutdown"],
                   settings={"timeouts": {"shutdown": "300ms"}}) as fleet:
            master = fleet.master
            old = pid_of(master.wait_running(), "s0-g1")
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            killed = master.events("slave_killed")
            self.assertEqual([(e["slave"], e["reason"]) for e in killed], [("s0-g1", "shutdown_timeout")])
            self.assertFalse(os.path.exists(f"/proc/{old}"))
            assert_single_owners(self, master.wait_running())




class SlavesThatCannotStart(unittest.TestCase):
    LIMIT = {"respawn": {"backoff_min": "50ms", "limit_burst": 3, "limit_interval": "60s"}}

    def test_a_missing_binary_fails_every_slot_and_a_reload_with_the_fixed_command_starts_them(self):
        fleet = Fleet(shards=8, slaves=2, rate=100, settings=self.LIMIT)
        try:
            good = set_command(fleet.master, ["/nonexistent/meshmaster-test-bot"])
            fleet.__enter__()
            master = fleet.master
            status = master.wait_for(lambda s: all(slot["failed"] for slot in s["slots"]), what="both slots failed")
            self.assertEqual(status["unassigned_shards"], list(range(8)))
            self.assertFalse(status["healthy"])
            failed = master.events("slot_failed")
            self.assertEqual(sorted(e["slot"] for e in failed), [0, 1])
            for e in failed:
                self.assertEqual(e["count"], 3)
                self.assertIn("cannot start /nonexistent/meshmaster-test-bot: No such file or directory", e["reason"])
            # Three tries a slot, then nothing more.
            time.sleep(0.5)
            self.assertEqual(len(master.events("spawn_failed")), 6)
            out = master.cli("status")
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn("DEGRADED:", out.stdout)
            self.assertIn("0 of 8 shards running", out.stdout)
            self.assertIn("4 shards unassigned (0..3): slot 0 failed: 3 starts failed within 60000 ms", out.stdout)
            self.assertIn("4 shards unassigned (4..7): slot 1 failed", out.stdout)
            out = master.cli("status", "--json")
            self.assertEqual(out.returncode, 1)
            self.assertEqual(len(json.loads(out.stdout)["problems"]), 3)
            with open(master.log_path) as log:
                said = [json.loads(line) for line in log if '"slot_failed"' in line]
            self.assertEqual(sorted(l["slot"] for l in said), [0, 1])
            self.assertTrue(all(l["level"] == "error" and "are unassigned until `meshmaster reload`" in l["msg"] for l in said))

            with open(master.config, "w") as f:
                f.write(good)
            out = master.cli("reload")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(out.stdout, "configuration reloaded\nfailed slots started again: 0, 1\n")
            self.assertEqual(sorted(e["slot"] for e in master.events("slot_retried")), [0, 1])
            status = master.wait_running()
            assert_single_owners(self, status)
            out = master.cli("status")
            self.assertEqual(out.returncode, 0, out.stdout)
        finally:
            fleet.close()

    def test_a_command_that_exits_at_once_fails_its_slot_and_a_reload_with_the_fixed_command_starts_it(self):
        with Fleet(shards=8, slaves=2, rate=100, settings=self.LIMIT) as fleet:
            master = fleet.master
            victim = pid_of(master.wait_running(), "s1-g1")
            good = set_command(master, ["/bin/false"])
            self.assertEqual(master.cli("reload").returncode, 0)
            os.kill(victim, signal.SIGKILL)  # a crash: its replacements run the new command
            status = master.wait_for(lambda s: s["slots"][1]["failed"], what="slot 1 failed")
            self.assertEqual(status["unassigned_shards"], [4, 5, 6, 7])
            self.assertFalse(status["slots"][0]["failed"])
            failed = master.events("slot_failed")
            self.assertEqual([(e["slot"], e["count"], e["reason"]) for e in failed], [(1, 3, "exited with code 1")])
            out = master.cli("status")
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn("4 of 8 shards running", out.stdout)
            self.assertIn("4 shards unassigned (4..7): slot 1 failed: 3 starts failed within 60000 ms "
                          "(respawn.limit_burst, respawn.limit_interval); the last: exited with code 1", out.stdout)
            self.assertNotIn("(0..3)", out.stdout)

            with open(master.config, "w") as f:
                f.write(good)
            out = master.cli("reload")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("failed slots started again: 1", out.stdout)
            assert_single_owners(self, master.wait_running())
            self.assertEqual(master.cli("status").returncode, 0)

    def test_a_binary_installed_after_its_slot_failed_starts_with_meshmaster_restart(self):
        fleet = Fleet(shards=4, slaves=1, rate=100, settings=self.LIMIT)
        try:
            master = fleet.master
            with open(master.config) as f:
                argv = json.loads(f.read().split("command = ", 1)[1].split("\n", 1)[0])
            installed = os.path.join(fleet.dir.name, "bot")  # not there yet
            set_command(master, [installed, *argv[1:]])
            fleet.__enter__()
            master.wait_for(lambda s: s["slots"][0]["failed"], what="slot 0 failed")
            self.assertEqual(master.cli("status").returncode, 1)
            os.symlink(argv[0], installed)
            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("failed slots started again: 0", out.stdout)
            self.assertEqual([e["reason"] for e in master.events("slot_retried")], ["restart requested"])
            assert_single_owners(self, master.wait_running())
            self.assertEqual(master.cli("status").returncode, 0)
        finally:
            fleet.close()


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Each test here looks for its own refusal record: no limit on them (test_abuse tests it).
        cls.fleet = Fleet(shards=8, slaves=2, rate=200, settings={"limits": {"refusal_burst": 100000}})
        cls.fleet.__enter__()
        cls.status = cls.fleet.master.wait_running()
        cls.address = cls.status["listen"]

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()

    def refusals(self):
        return [e for e in self.fleet.master.events() if e["event"] in ("frame_refused", "auth_failed")]

    def assert_others_carry_on(self):
        before = self.fleet.gateway.report()["processed"]
        status = self.fleet.master.status()
        assert_single_owners(self, status)
        self.assertEqual(sorted(s["id"] for s in status["slaves"] if s["slot"] is not None), ["s0-g1", "s1-g1"])
        deadline = time.monotonic() + LIVENESS
        while self.fleet.gateway.report()["processed"] <= before:
            self.assertLess(time.monotonic(), deadline, "the real slaves stopped processing")
            time.sleep(0.05)

    def test_wrong_secret(self):
        fake = FakeSlave(self.address, "intruder", "not-the-secret-at-all")
        name, body = fake.handshake()
        self.assertEqual(name, "error")
        self.assertEqual(body["code"], "auth_failed")
        self.assertTrue(body["fatal"])
        self.assertTrue(fake.closed())
        fake.close()
        self.assertTrue(any(e["event"] == "auth_failed" and e["slave"] == "intruder" for e in self.refusals()))
        self.assert_others_carry_on()

    def test_oversized_frame(self):
        fake = FakeSlave(self.address, "big-talker", SECRET)
        self.assertEqual(fake.handshake()[0], "welcome")
        fake.send_raw(struct.pack("<II", 18, 0xFFFFFFFF))
        answer = fake.receive_until("error")
        self.assertEqual(answer[1]["code"], "frame_too_large")
        self.assertTrue(fake.closed())
        fake.close()
        self.assertTrue(any(e["slave"] == "big-talker" and "frame_too_large" in e["reason"] for e in self.refusals()))
        self.assert_others_carry_on()

    def test_garbage(self):
        fake = FakeSlave(self.address, "noisy", SECRET)
        self.assertEqual(fake.handshake()[0], "welcome")
        # A valid header announcing a small body of junk that is not msgpack.
        fake.send_raw(struct.pack("<II", 18, 4) + b"\xc1\xc1\xc1\xc1")
        answer = fake.receive_until("error")
        self.assertEqual(answer[1]["code"], "bad_body")
        fake.close()
        self.assertTrue(any(e["slave"] == "noisy" and "bad_body" in e["reason"] for e in self.refusals()))
        self.assert_others_carry_on()

    def test_garbage_before_authentication(self):
        fake = FakeSlave(self.address, "-", SECRET)
        fake.receive()  # the challenge
        fake.send_raw(os.urandom(64))
        self.assertTrue(fake.closed())
        fake.close()
        self.assert_others_carry_on()

    def test_unknown_event_is_refused_but_not_fatal(self):
        fake = FakeSlave(self.address, "newer-peer", SECRET)
        self.assertEqual(fake.handshake()[0], "welcome")
        fake.send_raw(frame(4242, {"hello": "from the future"}))
        answer = fake.receive_until("error")
        self.assertEqual(answer[1]["code"], "unknown_event")
        self.assertFalse(answer[1].get("fatal", False))
        fake.send("heartbeat", {"seq": 1})  # the connection is still usable
        self.assertFalse(fake.closed(timeout=0.3))
        fake.close()
        self.assertTrue(any(e["slave"] == "newer-peer" and "unknown_event" in e["reason"] for e in self.refusals()))
        self.assert_others_carry_on()

    def test_stale_epoch(self):
        # A slave claiming shard 0 under an old epoch is fenced (told to stop it), and an
        # acknowledgement with a stale epoch changes nothing.
        fake = FakeSlave(self.address, "zombie", SECRET, shards=[(0, 0)])
        self.assertEqual(fake.handshake()[0], "welcome")
        stop = fake.receive_until("stop_shard")
        self.assertEqual((stop[1]["shard"], stop[1]["epoch"], stop[1].get("migration_id", 0)), (0, 0, 0))
        fake.send("shard_started", {"shard": 1, "epoch": 0})
        deadline = time.monotonic() + LIVENESS
        while not any(e["slave"] == "zombie" and e["shard"] == 1 for e in self.fleet.master.events("stale_ack_ignored")):
            self.assertLess(time.monotonic(), deadline, "the stale acknowledgement was not logged")
            time.sleep(0.05)
        fake.close()
        events = self.fleet.master.events()
        self.assertTrue(any(e["event"] == "shard_fenced" and e["slave"] == "zombie" and e["shard"] == 0 for e in events))
        self.assertTrue(all(sh["owner"] != "zombie" for sh in self.fleet.master.status()["shards"]))
        self.assert_others_carry_on()


if __name__ == "__main__":
    unittest.main(verbosity=2)
