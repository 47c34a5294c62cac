#!/usr/bin/python3
"""Every failpoint of the handoff, in the old slave, the new slave and the master: the process dies
at that exact step of a rolling restart (a crashed master is started again), and once things
settle the gateway's records must show 0 lost, 0 duplicated, no overlapping owners, every shard
with exactly one holder, and every migration with exactly one terminal record."""
import os
import signal
import time
import unittest

from support import Fleet, assert_single_owners, free_port

SLAVE_POINTS = [
    "slave.soft_start.before_ack",
    "slave.stop.before_callback",
    "slave.stop.after_callback",
    "slave.stop.after_send",
    "slave.resume.before_callback",
    "slave.resume.after_callback",
    "slave.resume.after_send",
    "slave.shutdown.before_ack",
]
MASTER_POINTS = [
    "master.migrate.before_stop",
    "master.migrate.after_stop_sent",
    "master.migrate.after_state_received",
    "master.migrate.after_resume_sent",
    "master.migrate.after_resumed",
    "master.retire.before_shutdown",
]
TERMINAL = ("migration_completed", "migration_rolled_back", "migration_failed", "migration_abandoned")
LIVENESS = 60  # seconds: a limit on waiting for what takes seconds at most, never a speed goal


def scenarios():
    for point in SLAVE_POINTS:
        yield "old slave", f"g1/{point}", point
        yield "new slave", f"g2/{point}", point
    for point in MASTER_POINTS:
        yield "master", point, point


class Failpoints(unittest.TestCase):
    def run_scenario(self, role, spec, point):
        fleet = Fleet(shards=8, slaves=2, rate=200, concurrency=2, listen=f"127.0.0.1:{free_port()}",
                      settings={"timeouts": {"stop": "1s", "resume": "1s", "soft_start": "2s", "shutdown": "1s"}})
        try:
            master = fleet.master
            master.start(env={"MESHMASTER_FAILPOINTS": f"{spec}=abort"})
            master.wait_for(lambda s: s["shards_running"] == 8 and s["shards_checkpointed"] == 8, timeout=LIVENESS,
                            what="a running, checkpointed fleet")
            master.signal(signal.SIGUSR2)
            deadline = time.monotonic() + 2 * LIVENESS  # timeouts of 1-2 s, recoveries, maybe a master restart
            restarted_master = False
            while time.monotonic() < deadline:
                if master.process.poll() is not None:
                    self.assertEqual(role, "master", "the master died although the failpoint was a slave's")
                    master.start()  # again, without the failpoint
                    restarted_master = True
                try:
                    status = master.status()
                except RuntimeError:  # the master died between the poll and the question
                    time.sleep(0.02)
                    continue
                if (status["restart"] is None and status["shards_running"] == 8 and not status["restart_queued"]
                        and all(s["phase"] in ("running", "ready") for s in status["slaves"])
                        and (restarted_master or status["restarts_completed"] + status["restarts_failed"] >= 1)):
                    break
                time.sleep(0.05)
            else:
                self.fail(f"{role} {point}: did not settle: {master.status()}")
            status = master.status()
            assert_single_owners(self, status)
            drained = fleet.gateway.drain()
            report = fleet.gateway.report()
            events = master.events()
            with open(master.log_path) as log:
                hit = f"failpoint {point} hit" in log.read()
        finally:
            fleet.close()
        self.assertEqual(drained, "drained", f"{role} {point}: {report}")
        self.assertEqual((report["lost"], report["duplicated"], report["overlaps"], report["checksum_mismatches"]),
                         (0, 0, 0, 0), f"{role} {point}: {report}")
        started = sorted(e["migration"] for e in events if e["event"] == "migration_started")
        ended = sorted(e["migration"] for e in events if e["event"] in TERMINAL)
        self.assertEqual(started, ended, f"{role} {point}: a migration without exactly one terminal record")
        return hit

    def test_every_failpoint_in_every_role(self):
        fired = []
        for role, spec, point in scenarios():
            with self.subTest(role=role, failpoint=point):
                if self.run_scenario(role, spec, point):
                    fired.append((role, point))
        print(f"\n{len(fired)} failpoints fired: " + ", ".join(f"{r}:{p}" for r, p in fired))
        # The steps a restart always passes through must have been hit, or the matrix tests nothing.
        for must in [("old slave", "slave.stop.after_callback"), ("new slave", "slave.resume.after_callback"),
                     ("new slave", "slave.soft_start.before_ack"), ("master", "master.migrate.after_stop_sent"),
                     ("master", "master.migrate.after_resume_sent")]:
            self.assertIn(must, fired)


if __name__ == "__main__":
    unittest.main(verbosity=2)
