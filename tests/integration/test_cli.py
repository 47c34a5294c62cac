#!/usr/bin/python3
"""The daemon's command line, configuration and operator signals, as an operator uses them."""
import datetime
import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import tempfile
import time
import unittest
from unittest import mock

from support import Fleet, assert_single_owners, Master

BUILD = os.environ.get("MESHMASTER_BUILD_DIR", "build/release")
BINARY = os.path.join(BUILD, "master", "meshmaster")
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


def meshmaster(*args, **kwargs):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60, **kwargs)


def float_literals(text):
    """Every number with a fraction or an exponent in the JSON lines of `text`, as written."""
    found = []
    for line in text.splitlines():
        json.loads(line, parse_float=lambda literal: found.append(literal) or float(literal))
    return found


class Configuration(unittest.TestCase):
    def write(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_a_good_configuration_passes(self):
        path = self.write('listen = "127.0.0.1:7400"\nshards = 32\ncheckpoint_sync = "batch"\n[slaves]\ncount = 2\ncommand = ["/bin/true"]\n'
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
            'shards = 8 = 9\n': ":1:12: shards: Error while parsing",  # a syntax error, with line, column and key
            'checkpoint_sync = "always"\n[slaves]\ncommand = ["x"]\n': "checkpoint_sync: 'always' is not \"none\" or \"batch\"",
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

    def workdir(self):
        d = tempfile.TemporaryDirectory(prefix="meshmaster-config-")
        self.addCleanup(d.cleanup)
        return d.name

    def config_in(self, d, text="", listen="127.0.0.1:0", socket=None, event_log=None):
        """A configuration whose files live in `d` (unless given), with `text` appended."""
        socket = socket or os.path.join(d, "m.sock")
        event_log = event_log or os.path.join(d, "events.jsonl")
        return self.write(f'listen = "{listen}"\nshards = 4\ncontrol_socket = "{socket}"\nevent_log = "{event_log}"\n'
                          f'{text}\n[slaves]\ncount = 1\ncommand = ["/bin/true"]\n')

    def assert_refused_by_check_and_run(self, path, expected, d):
        """check-config and run both exit 78 saying `expected`; run binds nothing on the way out."""
        out = meshmaster("check-config", "-c", path)
        self.assertEqual(out.returncode, 78, out.stdout)
        self.assertIn(expected, out.stderr)
        out = meshmaster("run", "-c", path, env=dict(os.environ, MESHMASTER_SECRET="x" * 32))
        self.assertEqual(out.returncode, 78, out.stderr)
        self.assertIn(expected, out.stderr)
        self.assertNotIn("meshmaster started", out.stderr)
        self.assertFalse(os.path.exists(os.path.join(d, "m.sock")), "a refused start left its control socket")

    def test_listen_may_be_a_host_name_and_check_config_resolves_it(self):
        d = self.workdir()
        out = meshmaster("check-config", "-c", self.config_in(d, listen="localhost:0"))
        self.assertEqual(out.returncode, 0, out.stderr)
        for listen, expected in (("nohost.invalid:7000", "listen: 'nohost.invalid:7000' does not resolve: "),
                                 ("192.0.2.1:7000", "listen: '192.0.2.1:7000': 192.0.2.1 is not an address of this host"),
                                 ("224.0.0.1:7000", "listen: '224.0.0.1:7000' is the multicast address 224.0.0.1")):
            with self.subTest(listen=listen):
                self.assert_refused_by_check_and_run(self.config_in(d, listen=listen), expected, d)

    def test_absurd_numbers_are_refused_naming_the_key(self):
        d = self.workdir()
        cases = {
            '[timeouts]\nstop = "nan"': "timeouts.stop must be a duration",
            '[timeouts]\nstop = "inf"': "timeouts.stop must be a duration",
            '[timeouts]\nstop = "1e3"': "timeouts.stop must be a duration",  # a bare number is whole milliseconds
            '[timeouts]\nstop = "-5s"': "timeouts.stop must be a duration",
            '[timeouts]\nstop = 1.5': "timeouts.stop is a floating-point number",
            '[timeouts]\nstop = nan': "timeouts.stop is a floating-point number",
            '[timeouts]\nstop = inf': "timeouts.stop is a floating-point number",
            '[timeouts]\nstop = 1e400': "timeouts.stop: Error while parsing",
            '[heartbeat]\ninterval = "31d"': "heartbeat.interval must be a duration of at most 30d",
            'adopt_window = "99999999999h"': "adopt_window must be a duration",
            '[limits]\nmax_state = "inf"': "limits.max_state must be a size",
            '[limits]\nmax_state = "nan"': "limits.max_state must be a size",
            '[limits]\nmax_state = "2TiB"': "limits.max_state: must be at most 1TiB",
            '[limits]\nmax_output = "1e30"': "limits.max_output must be a size",
            '[limits]\nstate_chunk = "0.5"': "limits.state_chunk must be a size",  # no half bytes
            '[restart]\nconcurrency = "1e3"': "restart.concurrency must be an integer",
        }
        for text, expected in cases.items():
            with self.subTest(text=text):
                # (top-level keys go before the tables config_in writes)
                out = meshmaster("check-config", "-c", self.config_in(d, text))
                self.assertEqual(out.returncode, 78, out.stdout)
                self.assertIn(expected, out.stderr)
        ok = meshmaster("check-config", "-c", self.config_in(d, '[timeouts]\nstop = "1.5s"\nstart = "2m"\nspawn = "1h"\n'
                                                                 'shutdown = 2500\n[respawn]\nstable_after = "1d"'))
        self.assertEqual(ok.returncode, 0, ok.stderr)
        out = meshmaster("check-config", "-c", self.config_in(d), "--stop-timeout", "inf")
        self.assertEqual(out.returncode, 78)
        self.assertIn("--stop-timeout: 'inf' must be a duration", out.stderr)

    def test_check_config_refuses_what_run_would_and_a_refused_run_leaves_nothing_behind(self):
        d = self.workdir()
        a_file = os.path.join(d, "a-file")
        with open(a_file, "w") as f:
            f.write("not a directory\n")
        taken = os.path.join(d, "notes.txt")
        long_socket = os.path.join(d, "s" * 120 + ".sock")
        cases = [
            (dict(event_log=os.path.join(d, "missing", "events.jsonl")), "",
             f"event_log: the directory of '{d}/missing/events.jsonl' does not exist"),
            (dict(), f'checkpoint_dir = "{a_file}/checkpoints"', f"checkpoint_dir: cannot create '{a_file}/checkpoints'"),
            (dict(socket=long_socket), "", f"control_socket: '{long_socket}' is {len(long_socket)} bytes long"),
            (dict(socket=taken), "", f"control_socket: '{taken}' exists and is not a socket"),
            (dict(), f'[tls]\ncert = "{d}/missing.pem"\nkey = "{d}/missing.key"',
             f"cannot read the TLS certificate file (tls.cert) {d}/missing.pem"),
        ]
        for files, text, expected in cases:
            with self.subTest(expected=expected):
                with open(taken, "w") as f:
                    f.write("an operator's notes\n")
                self.assert_refused_by_check_and_run(self.config_in(d, text, **files), expected, d)
                with open(taken) as f:
                    self.assertEqual(f.read(), "an operator's notes\n")

    def test_a_slave_command_that_is_not_there_is_a_warning(self):
        d = self.workdir()
        for command, expected in (("/nonexistent/bot", "slaves.command: '/nonexistent/bot' is not an executable file:"),
                                  ("no-such-bot-anywhere", "slaves.command: 'no-such-bot-anywhere' is not an executable file on the PATH")):
            with self.subTest(command=command):
                out = meshmaster("check-config", "-c", self.config_in(d), "--", command)
                self.assertEqual(out.returncode, 0, out.stderr)  # run starts, and retries it
                self.assertIn(expected, out.stderr)

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
        self.assertEqual(human.returncode, 0, human.stdout)
        self.assertIn("shards 16/16 running", human.stdout)
        self.assertNotIn("DEGRADED", human.stdout)
        self.assertIn("health     healthy: all 16 shards running\n", human.stdout)
        self.assertRegex(human.stdout, r"s0-g\d+ +0 +\d+ +running +8 +\d+ +(-|\d+\.\d\d ms) +127\.0\.0\.1:\d+ +0\.\.7\n")
        out = self.master.cli("status", "--json")
        self.assertEqual(out.returncode, 0, out.stdout)
        machine = json.loads(out.stdout)
        assert_single_owners(self, machine)
        self.assertEqual(len(machine["shards"]), 16)
        self.assertEqual((machine["healthy"], machine["problems"], machine["unassigned_shards"]), (True, [], []))
        self.assertEqual([(s["slot"], s["first_shard"], s["last_shard"], s["failed"]) for s in machine["slots"]],
                         [(0, 0, 7, False), (1, 8, 15, False)])

    def test_restart_wait_reports_the_outcome(self):
        cli = subprocess.Popen([self.master.binary, "restart", "--wait", "-s", self.master.socket],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = cli.communicate(timeout=120)
        self.assertEqual(cli.returncode, 0, stderr)
        self.assertRegex(stdout, r"restart \d+ completed in [\d.]+ s, 16 shards moved")
        # The log names who asked: the CLI's process, in the kernel's words (SO_PEERCRED).
        self.assertEqual(self.master.events("restart_started")[-1]["reason"],
                         f"control socket from pid {cli.pid} (uid {os.getuid()})")
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
            ready, _, _ = select.select([follower.stdout], [], [], LIVENESS)
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
            rejected = len(self.master.events("config_rejected"))
            self.master.signal(signal.SIGHUP)
            deadline = time.monotonic() + LIVENESS
            while len(self.master.events("config_rejected")) == rejected and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(len(self.master.events("config_rejected")), rejected + 1)
            # The same through the CLI: it exits 78 (EX_CONFIG) and says why.
            out = self.master.cli("reload")
            self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
            self.assertIn("reload rejected, the running configuration is kept", out.stderr)
            self.assertIn("Error while parsing", out.stderr)  # the duplicate table, with line and column
            with open(self.master.config, "w") as f:
                f.write(good.replace("concurrency = 16", "concurrency = 0"))
            out = self.master.cli("reload")
            self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
            self.assertIn("restart.concurrency must be an integer from 1", out.stderr)
            with open(self.master.config, "w") as f:
                f.write(good.replace("concurrency = 16", "concurrency = 3"))
            out = self.master.cli("reload")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(out.stdout, "configuration reloaded\n")
            out = self.master.cli("restart", "--wait")  # still works, with the new concurrency
            self.assertEqual(out.returncode, 0, out.stdout)
            self.assertTrue(self.master.events("config_reloaded"))
        finally:
            with open(self.master.config, "w") as f:
                f.write(good)

    def test_a_reload_applies_what_it_can_and_names_every_setting_it_cannot(self):
        with open(self.master.config) as f:
            good = f.read()
        moved_log = os.path.join(self.fleet.dir.name, "elsewhere.jsonl")
        changed = (good.replace("shards = 16", 'shards = 17\nadopt_window = "9s"')
                   .replace(f"event_log = {json.dumps(self.master.event_log)}", f"event_log = {json.dumps(moved_log)}")
                   .replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:1"')
                   # a live setting in the same file: one spare, which the running daemon must start
                   .replace("[slaves]\n", "[slaves]\nspares = 1\n"))
        self.assertEqual(changed.count("elsewhere.jsonl") + changed.count("127.0.0.1:1\"") + changed.count("spares = 1"), 3)
        try:
            with open(self.master.config, "w") as f:
                f.write(changed)
            out = self.master.cli("reload")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertEqual(out.stdout, "configuration reloaded in part\n")
            self.assertIn("NOT applied: listen, event_log, adopt_window, shards: these settings change only when the "
                          "meshmaster daemon itself restarts", out.stderr)
            reloaded = self.master.events("config_reloaded")[-1]
            not_applied = self.master.events("config_not_applied")[-1]
            self.assertEqual(not_applied["seq"], reloaded["seq"] + 1)
            self.assertEqual(not_applied["count"], 4)
            self.assertTrue(not_applied["reason"].startswith("listen, event_log, adopt_window, shards: "))
            self.assertFalse(os.path.exists(moved_log), "the event log stays where it was")
            # The live setting applied: a spare starts; the others kept their running values.
            status = self.master.wait_for(lambda s: any(x["slot"] is None and x["phase"] == "ready" for x in s["slaves"]),
                                          what="the spare the reload asked for")
            self.assertEqual(status["shard_count"], 16)
            self.assertTrue(status["healthy"], status["problems"])
        finally:
            with open(self.master.config, "w") as f:
                f.write(good)
        out = self.master.cli("reload")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # slaves.spares back to 0: the spare is retired.
        self.master.wait_for(lambda s: all(x["slot"] is not None for x in s["slaves"]), what="the spare retired")

    def test_a_reload_whose_live_settings_need_a_restart_only_one_is_rejected(self):
        # limits.state_chunk must fit in limits.max_frame; the new state_chunk fits only the new
        # max_frame, which a reload cannot apply: nothing is applied.
        with open(self.master.config) as f:
            good = f.read()
        try:
            with open(self.master.config, "w") as f:
                f.write(good + '[limits]\nmax_frame = "64MiB"\nstate_chunk = "32MiB"\n')
            out = self.master.cli("reload")
            self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
            self.assertIn("limits.state_chunk: must be more than 0 and fit in a frame (limits.max_frame) (kept at their "
                          "running values until meshmaster restarts: limits.max_frame)", out.stderr)
        finally:
            with open(self.master.config, "w") as f:
                f.write(good)

    def test_an_unknown_key_does_not_keep_the_cli_from_the_daemon(self):
        with open(self.master.config) as f:
            text = f.read()
        newer = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.addCleanup(os.unlink, newer.name)
        newer.write("setting_from_a_newer_version = 1\n" + text)
        newer.close()
        out = meshmaster("status", "-c", newer.name)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("shards 16/16 running", out.stdout)
        self.assertIn("setting_from_a_newer_version is not a setting (ignored)", out.stderr)
        out = meshmaster("events", "-c", newer.name, "--type", "master_started", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.strip())
        out = meshmaster("replay", "-c", newer.name, "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(json.loads(out.stdout)["shards"]), 16)
        # run and check-config stay strict: a typo must not fall back to a default
        out = meshmaster("check-config", "-c", newer.name)
        self.assertEqual(out.returncode, 78)
        self.assertIn("setting_from_a_newer_version is not a setting", out.stderr)

    def test_a_second_daemon_on_the_same_control_socket_is_refused_and_leaves_the_first_alone(self):
        out = meshmaster("run", "-c", self.master.config)
        self.assertEqual(out.returncode, 69, out.stderr)
        self.assertIn("another meshmaster answers on", out.stderr)
        self.assertTrue(stat.S_ISSOCK(os.stat(self.master.socket).st_mode), "the first daemon's socket is gone")
        self.assertEqual(self.master.cli("status").returncode, 0)

    def test_replay_rebuilds_the_table_for_the_shards_that_ran(self):
        status = self.master.wait_running()
        live = {s["shard"]: (s["owner"], s["epoch"]) for s in status["shards"]}
        for args in (["--log", self.master.event_log], ["-c", self.master.config]):
            with self.subTest(args=args):
                out = meshmaster("replay", *args, "--json")
                self.assertEqual(out.returncode, 0, out.stderr)
                replayed = json.loads(out.stdout)
                self.assertEqual({s["shard"]: (s["owner"], s["epoch"]) for s in replayed["shards"]}, live)
        out = meshmaster("replay", "--log", self.master.event_log)
        self.assertRegex(out.stdout, r"shard +15 ")
        self.assertNotRegex(out.stdout, r"shard +16 ")
        out = meshmaster("replay", "--log", self.master.event_log, "--shards", "4", "--json")
        self.assertEqual(len(json.loads(out.stdout)["shards"]), 4)
        self.assertIn("the log's last master ran 16 shards; replaying 4", out.stderr)

    def test_events_since_reads_rfc3339_local_times_and_durations(self):
        self.master.cli("restart", "--wait")
        log = ["--log", self.master.event_log]
        records = [json.loads(l) for l in meshmaster("events", *log, "--json").stdout.splitlines()]

        def at(record):
            return datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)

        def count_since(*args, env=None):
            out = meshmaster("events", *log, "--json", "--since", *args, env=env)
            self.assertEqual(out.returncode, 0, out.stderr)
            return len(out.stdout.splitlines())

        middle = at(records[len(records) // 2])
        expected = len([r for r in records if at(r) >= middle])
        self.assertLess(expected, len(records))
        plus_one = middle.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
        self.assertEqual(count_since(plus_one.isoformat(timespec="microseconds")), expected)  # ...+01:00
        self.assertEqual(count_since(middle.strftime("%Y-%m-%dT%H:%M:%S.%fZ")), expected)
        # Local time, here UTC+05:30 (a POSIX TZ: no time zone database needed), to the minute.
        minute = middle.replace(second=0, microsecond=0)
        local = (minute + datetime.timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M")
        env = dict(os.environ, TZ="IST-05:30")
        self.assertEqual(count_since(local, env=env), len([r for r in records if at(r) >= minute]))
        # Durations ago: the whole log is younger than these.
        for ago in ("1d", "2h", "90m"):
            self.assertEqual(count_since(ago), len(records), ago)
        self.assertEqual(count_since("#%d" % records[-1]["seq"]), 1)
        for bad in ("yesterday-ish", "5", "2026-13-01T00:00:00Z", "-5m", "#x"):
            out = meshmaster("events", *log, f"--since={bad}")
            self.assertEqual(out.returncode, 64, bad)
            self.assertIn(f"--since: '{bad}'", out.stderr)

    def test_json_output_has_plain_decimals(self):
        self.master.cli("restart", "--wait")
        events = meshmaster("events", "--log", self.master.event_log, "--json")
        self.assertEqual(events.returncode, 0, events.stderr)
        with open(self.master.event_log) as f:
            raw = f.read()
        status = self.master.cli("status", "--json")
        self.assertEqual(status.returncode, 0, status.stderr)
        for name, text in (("events --json", events.stdout), ("the event log", raw), ("status --json", status.stdout)):
            literals = float_literals(text)
            self.assertEqual([x for x in literals if "e" in x.lower()], [], name)
        # There were fractions to write: mono_ms on every record, durations of moves.
        literals = float_literals(events.stdout)
        self.assertTrue(any("." in x for x in literals), literals[:10])
        self.assertIn('"duration_ms":', events.stdout)

    def test_sigusr1_reopens_the_event_log(self):
        rotated = self.master.event_log + ".1"
        os.rename(self.master.event_log, rotated)
        try:
            self.master.signal(signal.SIGUSR1)
            # Until the new file holds its first record (it exists a moment before that).
            deadline = time.monotonic() + LIVENESS
            while not (os.path.exists(self.master.event_log) and os.path.getsize(self.master.event_log) > 0) \
                    and time.monotonic() < deadline:
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


class HostNames(unittest.TestCase):
    def test_run_listens_on_a_host_name(self):
        fleet = Fleet(shards=2, slaves=1, rate=50, listen="localhost:0")
        try:
            fleet.__enter__()
            status = fleet.master.wait_running()
            self.assertRegex(status["listen"], r"^(127\.0\.0\.1|\[::1\]):\d+$")
        finally:
            fleet.close()


class ExampleBot(unittest.TestCase):
    def test_help_exits_0_and_bad_arguments_64(self):
        bot = os.path.join(BUILD, "examples", "bot", "bot")
        out = subprocess.run([bot, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("--gateway", out.stdout)
        self.assertIn("--state-padding", out.stdout)
        for args in ([], ["--gateway", "127.0.0.1:1", "--state-padding", "lots"], ["--gateway", "127.0.0.1:1", "--bogus"]):
            out = subprocess.run([bot, *args], capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 64, args)


class Stopping(unittest.TestCase):
    def test_while_stopping_restart_is_refused_and_stop_answers_truthfully(self):
        # Slaves that ignore shutdown make the stop last (they are killed at timeouts.shutdown).
        fleet = Fleet(shards=4, slaves=2, rate=50, bot_args=["--ignore-shutdown"],
                      settings={"timeouts": {"shutdown": "10s"}})
        try:
            fleet.__enter__()
            master = fleet.master
            master.wait_running()
            out = master.cli("stop")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("stopping", out.stdout)
            out = master.cli("restart")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertEqual(out.stderr, "restart refused: the master is stopping\n")
            self.assertEqual(master.cli("restart", "--wait").returncode, 1)
            out = master.cli("stop")
            self.assertEqual((out.returncode, out.stdout), (0, "already stopping: the stop under way goes on\n"))
            out = master.cli("stop", "--leave-slaves")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("stop refused: the master is already stopping gracefully", out.stderr)
            out = master.cli("status")
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn("the master is stopping", out.stdout)
            self.assertEqual(master.process.wait(60), 0)
            self.assertEqual([e["reason"] for e in master.events("restart_refused")], ["the master is stopping"] * 2)
            self.assertEqual(master.events("restart_started"), [])
            # The daemon's stderr names who was refused, as for every action.
            with open(master.log_path) as f:
                refused = re.findall(r"control socket from pid \d+ \(uid \d+\): restart refused: the master is stopping", f.read())
            self.assertEqual(len(refused), 2)
        finally:
            fleet.close()

    def test_while_detaching_stop_is_refused_and_a_second_detach_is_not(self):
        # Every resume on a new slave takes 5 s: the detach waits for the move in flight.
        slow = {"MESHMASTER_FAILPOINTS": "g2/slave.resume.before_callback=delay:5000"}
        with mock.patch.dict(os.environ, slow), Fleet(shards=4, slaves=1, rate=50, concurrency=1,
                                                      settings={"timeouts": {"resume": "60s"}}) as fleet:
            master = fleet.master
            master.wait_running()
            self.assertEqual(master.cli("restart").returncode, 0)
            master.wait_for(lambda s: s["restart"] is not None and s["restart"]["in_flight"] > 0, what="a move in flight")
            out = master.cli("stop", "--leave-slaves")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("detaching", out.stdout)
            out = master.cli("stop")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("stop refused: the master is detaching", out.stderr)
            out = master.cli("stop", "--leave-slaves")
            self.assertEqual((out.returncode, out.stdout), (0, "already detaching: the detach under way goes on\n"))
            out = master.cli("restart")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("restart refused: the master is detaching", out.stderr)
            self.assertEqual(master.process.wait(60), 0)
            self.assertEqual(master.events()[-1]["event"], "master_detached")

    def test_restart_wait_exits_1_when_the_restart_fails(self):
        # Every new slave dies before it finishes its soft start: the restart rolls back.
        abort = {"MESHMASTER_FAILPOINTS": "g2/slave.soft_start.before_ack=abort"}
        with mock.patch.dict(os.environ, abort), Fleet(shards=4, slaves=2, rate=50) as fleet:
            fleet.master.wait_running()
            out = fleet.master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertRegex(out.stdout, r"restart \d+ FAILED in [\d.]+ s, 0 shards moved: new slave s0-g2 failed")
            assert_single_owners(self, fleet.master.wait_running())

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
            self.assertEqual([r["reason"] for r in fleet.master.events("master_stopping")], ["graceful (SIGTERM)"])
            for pid in pids:
                self.assertFalse(os.path.exists(f"/proc/{pid}"), f"slave {pid} still running")
        finally:
            fleet.close()


class StopWait(unittest.TestCase):
    """`meshmaster stop --wait`: returns once the daemon is gone, and says how it ended."""

    def test_returns_0_once_the_daemon_has_exited_cleanly(self):
        with Fleet(shards=4, slaves=2, rate=50) as fleet:
            master = fleet.master
            master.wait_running()
            out = master.cli("stop", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn(f"meshmaster (pid {master.process.pid}) exited: stopped cleanly", out.stdout)
            # Already gone when the command returned: only its exit status is left to collect.
            self.assertEqual(master.process.poll(), 0)
            self.assertEqual(master.events()[-1]["event"], "master_stopped")
            [stopping] = master.events("master_stopping")
            self.assertRegex(stopping["reason"], rf"^graceful \(control socket from pid \d+ \(uid {os.getuid()}\)\)$")

    def test_with_leave_slaves_the_slaves_outlive_the_master(self):
        with Fleet(shards=4, slaves=2, rate=50) as fleet:
            master = fleet.master
            pids = [s["pid"] for s in master.wait_running()["slaves"]]
            out = master.cli("stop", "--wait", "--leave-slaves")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("detached, the slaves keep running", out.stdout)
            [stopping] = master.events("master_stopping")
            self.assertRegex(stopping["reason"], r"^detaching: the slaves keep running \(control socket from pid \d+ ")
            self.assertEqual(master.process.poll(), 0)
            for pid in pids:  # alive, and still our bots (the fleet's close kills them by PID)
                self.assertTrue(master._is_our_slave(pid), f"slave {pid} is gone")

    def test_a_daemon_still_stopping_at_the_timeout_exits_1_and_a_bad_timeout_64(self):
        # Slaves that ignore shutdown keep the graceful stop going until timeouts.shutdown.
        with Fleet(shards=4, slaves=1, rate=50, bot_args=["--ignore-shutdown"],
                   settings={"timeouts": {"shutdown": "10s"}}) as fleet:
            master = fleet.master
            master.wait_running()
            out = master.cli("stop", "--wait", "--timeout", "soon")
            self.assertEqual(out.returncode, 64, out.stdout + out.stderr)
            self.assertIn("--timeout: 'soon' is not a duration", out.stderr)
            out = master.cli("stop", "--timeout", "5s")
            self.assertEqual(out.returncode, 64, out.stdout + out.stderr)
            self.assertIn("--timeout requires --wait", out.stderr)
            self.assertIsNone(master.process.poll(), "a bad command line asks for nothing")
            out = master.cli("stop", "--wait", "--timeout", "300ms")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("is still running after 300ms", out.stderr)
            self.assertIsNone(master.process.poll())
            out = master.cli("stop", "--wait")  # the stop under way, followed to its end
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("already stopping", out.stdout)
            self.assertEqual(master.process.poll(), 0)


class RestartProgress(unittest.TestCase):
    """`restart --wait` while it waits: plain sentences in a pipe or a log, a bar redrawn in place on
    a terminal; the outcome's line and exit code the same either way."""

    @classmethod
    def setUpClass(cls):
        # Every resume on a new slave (both restarts' generations) takes 400 ms and one move runs at
        # a time: the daemon reports progress (every 100 ms) several times before the end.
        slow = {"MESHMASTER_FAILPOINTS": "g2/slave.resume.before_callback=delay:400,"
                                         "g3/slave.resume.before_callback=delay:400"}
        with mock.patch.dict(os.environ, slow):
            cls.fleet = Fleet(shards=4, slaves=1, rate=50, concurrency=1)
            cls.fleet.__enter__()
        cls.master = cls.fleet.master
        cls.master.wait_running()

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()

    def test_a_pipe_gets_plain_lines_with_the_counts(self):
        out = self.master.cli("restart", "--wait")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertNotIn("\r", out.stdout)
        self.assertNotIn("\033", out.stdout)
        lines = out.stdout.splitlines()
        self.assertRegex(lines[0], r"^restart started \(id \d+\)$")
        self.assertRegex(lines[-1], r"^restart \d+ completed in [\d.]+ s, 4 shards moved$")
        progress = lines[1:-1]
        self.assertTrue(progress, out.stdout)
        for line in progress:
            self.assertRegex(line, r"^restart \d+: \d+/\d+ shards moved( \(\d+ %\))?, \d+/1 slave pairs done, "
                                   r"\d+ in flight, [\dhms. ]+ elapsed, (about [\dhms. ]+ left|no estimate of the time left yet)$")
        # Rate-limited (the daemon reports ten a second): the first report, one per tenth of the 4
        # shards crossed (at most 4), and one a second.
        seconds = float(re.search(r" in ([\d.]+) s,", lines[-1]).group(1))
        self.assertLessEqual(len(progress), 1 + 4 + seconds + 1, out.stdout)
        assert_single_owners(self, self.master.wait_running())

    def test_a_terminal_gets_a_bar_redrawn_in_place_then_the_outcome(self):
        leader, follower = pty.openpty()
        try:
            process = subprocess.Popen([self.master.binary, "restart", "--wait", "-s", self.master.socket],
                                       stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            os.close(follower)
            follower = None
            received = b""
            while True:
                ready, _, _ = select.select([leader], [], [], LIVENESS)
                self.assertTrue(ready, f"no output for {LIVENESS} s: {received!r}")
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                received += chunk
            self.assertEqual(process.wait(LIVENESS), 0, process.stderr.read())
            process.stderr.close()
        finally:
            os.close(leader)
            if follower is not None:
                os.close(follower)
        text = received.decode().replace("\r\n", "\n")  # the terminal's own newline translation
        self.assertRegex(text, r"^restart started \(id \d+\)\n")
        bars = re.findall(r"\r\033\[K(\[[#-]+\] \d+/4 shards  \d+/1 pairs  [\dhms. ]+  ETA [^\r\n]+)", text)
        self.assertTrue(bars, repr(text))
        # Sized from the terminal (a pseudo-terminal nobody sized: 80 columns), one column to spare.
        self.assertTrue(all(len(b) == 79 for b in bars), bars)
        # The bar is cleared, and the outcome is the last line, as in a pipe.
        self.assertRegex(text, r"\r\033\[Krestart \d+ completed in [\d.]+ s, 4 shards moved\n$")
        assert_single_owners(self, self.master.wait_running())


if __name__ == "__main__":
    unittest.main(verbosity=2)
