#!/usr/bin/python3
"""A hung slave is fenced before its shards are granted again, and when it wakes up it processes
nothing more of them.

External slaves (launched here, not by meshmaster, which therefore cannot kill them): one is frozen
with SIGSTOP; the master notices the missed heartbeats, supersedes its epochs and resumes its shards
on an idle slave from their checkpoints. Then the frozen slave is woken with SIGCONT: it may try to
commit events it had in its buffers, but the gateway refuses every commit under a superseded epoch,
the master tells it to stop whatever it still claims, and the audit shows it processed nothing after
the fence — 0 lost, 0 duplicated, no overlapping owners."""
import os
import signal
import subprocess
import time
import unittest

from support import Fleet, assert_single_owners, free_port

SECRET = "fencing-test-secret-0123456789"
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


class Fencing(unittest.TestCase):
    def test_a_frozen_slave_is_fenced_and_harmless_when_it_wakes(self):
        port = free_port()
        fleet = Fleet(shards=8, slaves=2, rate=300, listen=f"127.0.0.1:{port}",
                      settings={"slaves": {"spawn": False}, "heartbeat": {"interval": "50ms", "misses": 4}})
        bots = []
        try:
            fleet.master.start()
            bot = os.path.join(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"), "examples", "bot", "bot")
            for n in range(3):
                env = dict(os.environ, MESHMASTER_ADDR=f"127.0.0.1:{port}", MESHMASTER_SLAVE_ID=f"ext-{n}",
                           MESHMASTER_SECRET="demo-secret-0123456789")
                bots.append(subprocess.Popen([bot, "--gateway", fleet.gateway.address], env=env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                if n < 2:  # the first two take the slots, the third stays idle
                    fleet.master.wait_for(lambda s, n=n: len(s["slaves"]) == n + 1, what=f"ext-{n} to join")
            master = fleet.master
            status = master.wait_for(lambda s: s["shards_running"] == 8 and s["shards_checkpointed"] == 8
                                     and len(s["slaves"]) == 3, what="a running, checkpointed fleet")
            frozen = next(s for s in status["slaves"] if s["id"] == "ext-0")
            self.assertEqual(frozen["shards"], 4)

            bots[0].send_signal(signal.SIGSTOP)
            stopped_at = time.time()
            status = master.wait_for(lambda s: s["shards_running"] == 8 and all(
                sh["owner"] in ("ext-1", "ext-2") for sh in s["shards"]), timeout=LIVENESS, what="the shards to move away")
            recovered_in = time.time() - stopped_at
            lost = [e for e in master.events("slave_lost") if e["slave"] == "ext-0"]
            # Silent (no heartbeat) or stuck (heartbeats whose progress stands still): a frozen
            # process can show either first, depending on where the freeze caught its loop.
            self.assertEqual(len(lost), 1, lost)
            self.assertIn(lost[0]["reason"], ("heartbeat_timeout", "progress_stalled"))
            self.assertTrue(master.events("spare_promoted"))
            # How fast (printed below) is the machine's business: tests/bench/resilience measures it.
            before_wake = fleet.gateway.report()["per_slave"].get("ext-0", 0)

            time.sleep(0.3)
            bots[0].send_signal(signal.SIGCONT)
            time.sleep(1.5)  # it wakes, drains its buffers, reconnects
            status = master.status()
            assert_single_owners(self, status)
            self.assertTrue(all(sh["owner"] in ("ext-1", "ext-2") for sh in status["shards"]))
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
        finally:
            for b in bots:
                if b.poll() is None:
                    b.send_signal(signal.SIGCONT)
                    b.kill()
                b.wait()
            fleet.close()
        self.assertEqual(report["per_slave"].get("ext-0", 0), before_wake,
                         "the fenced slave committed events after waking up")
        self.assertEqual((report["lost"], report["duplicated"], report["overlaps"], report["checksum_mismatches"]),
                         (0, 0, 0, 0), report)
        print(f"\nrecovered in {recovered_in * 1000:.0f} ms; {report['fenced_acks']} commits refused, "
              f"{report['fenced_attaches']} resumes refused after the zombie woke up")


if __name__ == "__main__":
    unittest.main(verbosity=2)
