#!/usr/bin/python3
"""The daemon's command line, configuration and operator signals, as an operator uses them."""
import json
import os
import select
import signal
import subprocess
import tempfile
import time
import unittest

from support import Fleet, assert_single_owners, Master

BINARY = os.path.join(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"), "master", "meshmaster")


def meshmaster(*args, **kwargs):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60, **kwargs)


class Configuration(unittest.TestCase):
    def write(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_a_good_configuration_passes(self):
        path = self.write('listen = "127.0.0.1:7400"\nshards = 32\n[slaves]\ncount = 2\ncommand = ["/bin/true"]\n'
                          '[timeouts]\nstop = "2s"\n[heartbeat]\ninterval = 100\n[limits]\nmax_state = "64MiB"\n')
        out = meshmaster("check-config", "-c", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("32 shards over 2 slaves", out.stdout)

    def test_bad_configurations_exit_78_and_say_where(self):
        cases = {
            'shards = "many"\n': "shards must be an integer",
            'shards = 8\n[slaves]\ncount = 2\ncommand = ["x"]\nbogus = 1\n': "slaves.bogus is not a setting",
            '[timeouts]\nstop = "soon"\n[slaves]\ncommand = ["x"]\n': "timeouts.stop must be a duration",
            'listen = "nowhere"\n[slaves]\ncommand = ["x"]\n': "listen: 'nowhere' is not host:port",
            'shards = 8\n[slaves]\ncount = 2\n': "slaves.command: needed to spawn slaves",
            'shards = 8 = 9\n': ":1:12: Error while parsing",  # a syntax error, with line and column
        }
        for text, expected in cases.items():
            with self.subTest(text=text):
                out = meshmaster("check-config", "-c", self.write(text))
                self.assertEqual(out.returncode, 78, out.stdout)
                self.assertIn(expected, out.stderr)

    def test_flags_override_the_file(self):
        path = self.write('shards = 8\n[slaves]\ncount = 2\ncommand = ["x"]\n')
        out = meshmaster("check-config", "-c", path, "--shards", "64", "--slaves", "4", "--concurrency", "5")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("64 shards over 4 slaves", out.stdout)
        self.assertIn("5 moves in flight", out.stdout)
        out = meshmaster("check-config", "-c", path, "--stop-timeout", "soon")
        self.assertEqual(out.returncode, 78)
        self.assertIn("--stop-timeout: 'soon' must be a duration", out.stderr)

    def test_usage_errors_exit_64(self):
        self.assertEqual(meshmaster("status", "--no-such-flag").returncode, 64)
        self.assertEqual(meshmaster().returncode, 64)

    def test_no_daemon_is_69(self):
        out = meshmaster("status", "-s", "/nonexistent/meshmaster.sock")
        self.assertEqual(out.returncode, 69)
        self.assertIn("no meshmaster answers", out.stderr)


class RunningDaemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(shards=16, slaves=2, rate=100)
        cls.fleet.__enter__()
        cls.master = cls.fleet.master
        cls.master.wait_running()

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()

    def test_status_for_people_and_scripts(self):
        human = self.master.cli("status")
        self.assertEqual(human.returncode, 0)
        self.assertIn("shards 16/16 running", human.stdout)
        self.assertRegex(human.stdout, r"s0-g\d+ +0 +\d+ +running +8")
        machine = json.loads(self.master.cli("status", "--json").stdout)
        assert_single_owners(self, machine)
        self.assertEqual(len(machine["shards"]), 16)

    def test_restart_wait_reports_the_outcome(self):
        out = self.master.cli("restart", "--wait")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"restart \d+ completed in [\d.]+ s, 16 shards moved")
        assert_single_owners(self, self.master.wait_running())

    def test_events_filters(self):
        self.master.cli("restart", "--wait")
        log = ["--log", self.master.event_log]
        everything = meshmaster("events", *log, "--json").stdout.splitlines()
        self.assertGreater(len(everything), 10)
        moves = [json.loads(l) for l in meshmaster("events", *log, "--json", "--type", "migration_completed").stdout.splitlines()]
        self.assertTrue(moves and all(m["event"] == "migration_completed" for m in moves))
        shard3 = [json.loads(l) for l in meshmaster("events", *log, "--json", "--shard", "3").stdout.splitlines()]
        self.assertTrue(shard3 and all(m["shard"] == 3 for m in shard3))
        prefixed = [json.loads(l) for l in meshmaster("events", *log, "--json", "--type", "restart_*").stdout.splitlines()]
        self.assertTrue(all(m["event"].startswith("restart_") for m in prefixed))
        slave = moves[-1]["slave"]
        by_slave = [json.loads(l) for l in meshmaster("events", *log, "--json", "--slave", slave).stdout.splitlines()]
        self.assertTrue(by_slave and all(slave in (m.get("slave"), m.get("peer")) for m in by_slave))
        since = int(everything[-1].split('"seq":')[1].split(",")[0])
        recent = meshmaster("events", *log, "--json", "--since", f"#{since}").stdout.splitlines()
        self.assertEqual(len(recent), 1)
        self.assertEqual(len(meshmaster("events", *log, "--json", "--since", "1h").stdout.splitlines()), len(everything))
        human = meshmaster("events", *log, "--type", "migration_completed").stdout.splitlines()
        self.assertRegex(human[-1], r"migration_completed +slave=s\d-g\d+ peer=s\d-g\d+ shard=\d+ epoch=\d+ migration=\d+")
        self.assertEqual(meshmaster("events", *log, "--since", "yesterday-ish").returncode, 64)

    def test_events_follow(self):
        next_seq = self.master.events()[-1]["seq"] + 1
        follower = subprocess.Popen([BINARY, "events", "--log", self.master.event_log, "--json", "--follow",
                                     "--since", f"#{next_seq}", "--type", "restart_completed"],
                                    stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            self.master.cli("restart", "--wait")
            ready, _, _ = select.select([follower.stdout], [], [], 10)
            self.assertTrue(ready, "--follow printed nothing")
            line = follower.stdout.readline()
            self.assertEqual(json.loads(line)["event"], "restart_completed")
        finally:
            follower.kill()
            follower.wait()
            follower.stdout.close()

    def test_sighup_keeps_the_old_config_when_the_new_one_is_bad(self):
        with open(self.master.config) as f:
            good = f.read()
        try:
            with open(self.master.config, "a") as f:
                f.write("\n[restart]\nconcurrency = 0\n")  # invalid (and a duplicate table)
            self.master.signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while not self.master.events("config_rejected") and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(self.master.events("config_rejected"))
            with open(self.master.config, "w") as f:
                f.write(good.replace("concurrency = 16", "concurrency = 3"))
            out = self.master.cli("reload")
            self.assertIn("reloaded", out.stdout)
            out = self.master.cli("restart", "--wait")  # still works, with the new concurrency
            self.assertEqual(out.returncode, 0, out.stdout)
            self.assertTrue(self.master.events("config_reloaded"))
            with open(self.master.config, "w") as f:
                f.write(good.replace("shards = 16", "shards = 17"))
            self.assertIn("shards cannot change", self.master.cli("reload").stdout)
        finally:
            with open(self.master.config, "w") as f:
                f.write(good)

    def test_sigusr1_reopens_the_event_log(self):
        rotated = self.master.event_log + ".1"
        os.rename(self.master.event_log, rotated)
        try:
            self.master.signal(signal.SIGUSR1)
            deadline = time.monotonic() + 5
            while not os.path.exists(self.master.event_log) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(self.master.event_log))
            self.assertEqual(self.master.events()[0]["event"], "event_log_reopened")
        finally:
            with open(rotated) as old, open(self.master.event_log) as new:
                merged = old.read() + new.read()
            with open(self.master.event_log, "w") as f:
                f.write(merged)
            os.unlink(rotated)
            self.master.signal(signal.SIGUSR1)


class Stopping(unittest.TestCase):
    def test_sigterm_shuts_slaves_down_in_order_then_exits_0(self):
        fleet = Fleet(shards=12, slaves=3, rate=100)
        try:
            fleet.__enter__()
            status = fleet.master.wait_running()
            pids = [s["pid"] for s in status["slaves"]]
            code = fleet.master.stop()
            self.assertEqual(code, 0)
            retiring = [e["slave"] for e in fleet.master.events("slave_retiring")]
            self.assertEqual(retiring, ["s0-g1", "s1-g1", "s2-g1"])
            self.assertEqual(fleet.master.events()[-1]["event"], "master_stopped")
            for pid in pids:
                self.assertFalse(os.path.exists(f"/proc/{pid}"), f"slave {pid} still running")
        finally:
            fleet.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
