#!/usr/bin/python3
"""`meshmaster status` at scale, against a real daemon and real bots: the default output summarises
(counts per state, the shards not running, the slaves) however many shards there are, `--shards`
lists them (all, or a range), `--json` stays complete, and the exit code tells the truth."""
import json
import os
import re
import signal
import subprocess
import unittest

from support import Fleet, set_command

BUILD = os.environ.get("MESHMASTER_BUILD_DIR", "build/release")
BINARY = os.path.join(BUILD, "master", "meshmaster")
SHARDS = 1024
# A row of a shard table: a shard number, then its state.
SHARD_ROW = re.compile(r"^ *(\d+)  (running|stopping|resuming|starting|unowned) ", re.MULTILINE)


def meshmaster(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60)




class HealthyFleet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(shards=SHARDS, slaves=4, rate=1)
        cls.fleet.__enter__()
        cls.master = cls.fleet.master
        cls.master.wait_running(timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()

    def test_the_default_output_summarises_without_a_row_per_shard(self):
        out = self.master.cli("status")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"shards {SHARDS}/{SHARDS} running", out.stdout)
        self.assertIn(f"health     healthy: all {SHARDS} shards running\n", out.stdout)
        self.assertIn(f"shards     {SHARDS} running\n", out.stdout)
        self.assertIn("slaves     4: 4 running\n", out.stdout)
        self.assertRegex(out.stdout, r"\nmaster     \S+, pid \d+, up ")
        self.assertRegex(out.stdout, r"\ns3-g1 +3 +\d+ +running +256 +1 +(-|\d+\.\d\d ms) +127\.0\.0\.1:\d+ +768\.\.1023\n")
        self.assertEqual(SHARD_ROW.findall(out.stdout), [])
        self.assertLess(out.stdout.count("\n"), 30)

    def test_json_is_complete_and_json_summary_leaves_the_shards_out(self):
        out = self.master.cli("status", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        full = json.loads(out.stdout)
        self.assertEqual(full["detail"], "full")
        self.assertEqual(sorted(s["shard"] for s in full["shards"]), list(range(SHARDS)))
        self.assertEqual(full["unassigned_shards"], [])
        self.assertEqual(full["shard_states"], {"unowned": 0, "starting": 0, "running": SHARDS, "stopping": 0, "resuming": 0})
        self.assertEqual((full["shards_not_running"], full["shards_not_running_first"]), (0, []))
        self.assertEqual(full["master"]["pid"], self.master.process.pid)
        out = self.master.cli("status", "--json", "--summary")
        self.assertEqual(out.returncode, 0, out.stderr)
        summary = json.loads(out.stdout)
        self.assertEqual(summary["detail"], "summary")
        self.assertNotIn("shards", summary)
        self.assertNotIn("unassigned_shards", summary)
        # Everything else the full answer has (times aside), for pollers that need no shard table.
        for key in ("listen", "generation", "shard_count", "shards_running", "healthy", "problems", "slots", "slaves",
                    "restart", "shard_states", "shards_not_running"):
            self.assertIn(key, summary)
        self.assertEqual(summary["shards_running"], SHARDS)
        self.assertLess(len(out.stdout) * 4, len(json.dumps(full)))

    def test_shards_lists_every_shard_or_the_ones_asked_for(self):
        out = self.master.cli("status", "--shards")
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = SHARD_ROW.findall(out.stdout)
        self.assertEqual([int(n) for n, _ in rows], list(range(SHARDS)))
        self.assertEqual({state for _, state in rows}, {"running"})
        self.assertTrue(out.stdout.startswith(" SHARD  STATE     OWNER           EPOCH  HANDOFF\n"), out.stdout[:200])
        self.assertEqual(out.stdout.count("\n"), SHARDS + 1)
        out = self.master.cli("status", "--shards", "0-99,512")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([int(n) for n, _ in SHARD_ROW.findall(out.stdout)], list(range(100)) + [512])
        self.assertRegex(out.stdout, r"\n   512  running   s2-g1 +1  -\n")
        out = self.master.cli("status", "--shards=1020..1023", "--state", "running")
        self.assertEqual([int(n) for n, _ in SHARD_ROW.findall(out.stdout)], [1020, 1021, 1022, 1023])
        out = self.master.cli("status", "--state", "unowned,not-running")
        self.assertEqual((out.returncode, SHARD_ROW.findall(out.stdout)), (0, []))

    def test_a_bad_selection_is_refused_naming_what_is_wrong(self):
        cases = {
            ("--shards", "9-3"): "--shards: '9-3' runs backwards: 9 is after 3\n",
            ("--shards", "0-99,x"): "--shards: 'x' is neither a shard number nor a range (write them like 0-99,512)\n",
            ("--shards", "1,,2"): "--shards: '1,,2' has an empty item between commas\n",
            ("--shards", "1000-1024"): "--shards: 1000-1024 is past the fleet's last shard: it has 1024 shards (0..1023)\n",
            ("--state", "stuck"): "--state: 'stuck' is not a state; the states are unowned, starting, running, stopping, "
                                  "resuming, moving, not-running\n",
        }
        for args, expected in cases.items():
            with self.subTest(args=args):
                out = self.master.cli("status", *args)
                self.assertEqual((out.returncode, out.stdout, out.stderr), (64, "", expected))
        # A mistake in the list needs no daemon to be told.
        out = meshmaster("status", "--shards", "9-3", "-s", "/nonexistent/meshmaster.sock")
        self.assertEqual((out.returncode, out.stderr), (64, "--shards: '9-3' runs backwards: 9 is after 3\n"))
        for args in (("--json", "--shards"), ("--json", "--state", "running"), ("--summary",)):
            with self.subTest(args=args):
                self.assertEqual(self.master.cli("status", *args).returncode, 64)

    def test_the_control_socket_still_answers_a_bare_status_request_in_full(self):
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(self.master.socket)
            s.sendall(b'{"command": "status"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
            answer = json.loads(data)
            self.assertEqual((answer["detail"], len(answer["shards"])), ("full", SHARDS))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(self.master.socket)
            s.sendall(b'{"command": "status", "detail": "some"}\n')
            self.assertEqual(json.loads(s.makefile().readline()),
                             {"error": 'status: detail must be "full" or "summary", not "some"'})


class DegradedFleet(unittest.TestCase):
    LIMIT = {"respawn": {"backoff_min": "50ms", "limit_burst": 3, "limit_interval": "60s"}}

    def test_a_killed_slave_whose_slot_fails_shows_degraded_with_the_shards_not_running(self):
        with Fleet(shards=SHARDS, slaves=4, rate=1, settings=self.LIMIT) as fleet:
            master = fleet.master
            status = master.wait_running(timeout=120)
            victim = next(s["pid"] for s in status["slaves"] if s["id"] == "s1-g1")
            set_command(master, ["/bin/false"])  # its replacements cannot start: slot 1 fails
            self.assertEqual(master.cli("reload").returncode, 0)
            os.kill(victim, signal.SIGKILL)
            master.wait_for(lambda s: s["slots"][1]["failed"], timeout=60, what="slot 1 failed")

            out = master.cli("status")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("health     DEGRADED: 256 of 1024 shards not running: 256 unowned\n", out.stdout)
            self.assertIn("  - 256 shards unassigned (256..511): slot 1 failed: 3 starts failed", out.stdout)
            self.assertIn("shards     768 running, 256 unowned\n", out.stdout)
            self.assertIn("not running (256)\n", out.stdout)
            self.assertEqual(SHARD_ROW.findall(out.stdout), [(str(n), "unowned") for n in range(256, 276)])
            self.assertIn("  ... and 236 more (meshmaster status --state not-running lists them all)\n", out.stdout)
            self.assertLess(out.stdout.count("\n"), 60)

            out = master.cli("status", "--state", "not-running")
            self.assertEqual(out.returncode, 1)
            self.assertEqual(SHARD_ROW.findall(out.stdout), [(str(n), "unowned") for n in range(256, 512)])
            out = master.cli("status", "--json")
            self.assertEqual(out.returncode, 1)
            full = json.loads(out.stdout)
            self.assertEqual(len(full["shards"]), SHARDS)
            self.assertEqual(full["unassigned_shards"], list(range(256, 512)))
            self.assertEqual(full["shard_states"]["unowned"], 256)
            self.assertEqual(full["shards_not_running"], 256)
            self.assertEqual(full["shards_not_running_states"], {"unowned": 256, "starting": 0, "stopping": 0, "resuming": 0})
            self.assertEqual(master.cli("status", "--json", "--summary").returncode, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
