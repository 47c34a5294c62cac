#!/usr/bin/python3
"""Prometheus metrics against a real daemon with spawned example bots: `meshmaster metrics` passes
`promtool check metrics` (lint warnings included), counts what happened — a rolling restart, the
migrations it made, frames both ways, wrong secrets (counted past the refusal limiter) — and the
Grafana dashboard and docs/operations.md name exactly the metrics the daemon defines."""
import json
import os
import re
import subprocess
import time
import unittest

from fake_slave import FakeSlave
from support import Fleet

SOURCE_DIR = os.environ.get("MESHMASTER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROMTOOL = "/usr/bin/promtool"
SHARDS, SLAVES = 16, 2
WRONG_SECRETS, BURST = 6, 2

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """The exposition as {"types": {family: type}, "help": {family: text}, "samples": {(name, labels): value}}
    where labels is a sorted tuple of (name, value). Raises on a line that is none of these."""
    types, helps, samples = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            types[name] = kind
        elif line:
            m = SAMPLE.match(line)
            if not m:
                raise ValueError(f"not an exposition line: {line!r}")
            labels = []
            rest = m.group(2) or ""
            while rest:
                lm = LABEL.match(rest)
                if not lm:
                    raise ValueError(f"bad labels in {line!r}")
                labels.append((lm.group(1), lm.group(2)))
                rest = rest[lm.end():]
            samples[(m.group(1), tuple(sorted(labels)))] = float(m.group(3))
    return {"types": types, "help": helps, "samples": samples}


def process_start_time(pid):
    """When process `pid` started, in seconds since the epoch, as /proc tells (boot time + field 22)."""
    with open(f"/proc/{pid}/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")


def value(metrics, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    if key not in metrics["samples"]:
        raise AssertionError(f"no sample {name}{labels}")
    return metrics["samples"][key]


def series(metrics, name):
    """{labels dict as a tuple: value} of every sample named `name`."""
    return {labels: v for (n, labels), v in metrics["samples"].items() if n == name}


def family_of(sample_name, types):
    """The family a sample or an expression's series name belongs to (a histogram's _bucket, _sum, _count)."""
    if sample_name in types:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[: -len(suffix)]
        if sample_name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return None


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        settings = {"limits": {"refusal_burst": BURST, "refusal_window": "1h"},  # the log keeps BURST of them
                    "heartbeat": {"interval": "100ms"}}
        with Fleet(shards=SHARDS, slaves=SLAVES, rate=100, settings=settings) as fleet:
            master = fleet.master
            status = master.wait_running()
            cls.before = cls.scrape(master)
            out = master.cli("restart", "--wait")
            if out.returncode != 0:
                raise AssertionError(out.stdout + out.stderr)
            for i in range(WRONG_SECRETS):
                intruder = FakeSlave(status["listen"], f"intruder-{i}", "not-the-secret")
                cls.refused = intruder.handshake()
                intruder.close()
            cls.status = master.wait_running()
            # Heartbeats both ways, at least one each (a liveness limit, not a speed goal).
            deadline = time.monotonic() + 60
            while True:
                cls.text = cls.raw(master)
                cls.after = parse(cls.text)
                beats = [value(cls.after, "meshmaster_frames_total", direction=d, event="heartbeat") for d in ("in", "out")]
                if min(beats) > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            cls.usage = master.usage()  # the daemon's CPU time from /proc, read after that scrape
            cls.status_after = master.status()
            cls.started = process_start_time(master.process.pid)
            cls.events = master.events()
            cls.unreachable = subprocess.run([master.binary, "metrics", "-s", master.socket + ".none"],
                                             capture_output=True, text=True, timeout=60)

    @staticmethod
    def raw(master):
        out = master.cli("metrics")
        if out.returncode != 0:
            raise AssertionError(f"meshmaster metrics: {out.returncode} {out.stderr}")
        return out.stdout

    @classmethod
    def scrape(cls, master):
        return parse(cls.raw(master))

    def test_promtool_accepts_the_output_without_a_warning(self):
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=self.text, capture_output=True, text=True,
                               timeout=60)
        print(f"\npromtool check metrics: exit {check.returncode}, stdout {check.stdout!r}, stderr {check.stderr!r}")
        self.assertEqual((check.returncode, check.stdout, check.stderr), (0, "", ""))

    def test_the_counts_after_a_rolling_restart(self):
        m, before = self.after, self.before
        moved = [e for e in self.events if e["event"] == "migration_completed"]
        self.assertEqual(len(moved), SHARDS)
        self.assertEqual(value(before, "meshmaster_restarts_total", outcome="completed"), 0)
        self.assertEqual(value(m, "meshmaster_restarts_total", outcome="completed"), 1)
        self.assertEqual(value(m, "meshmaster_restarts_total", outcome="failed"), 0)
        self.assertEqual(value(m, "meshmaster_restarts_total", outcome="abandoned"), 0)
        self.assertEqual(value(m, "meshmaster_migration_duration_seconds_count"), SHARDS)
        self.assertEqual(value(m, "meshmaster_migration_duration_seconds_bucket", le="+Inf"), SHARDS)
        # (The log rounds each duration to a microsecond.)
        self.assertAlmostEqual(value(m, "meshmaster_migration_duration_seconds_sum"),
                               sum(e["duration_ms"] for e in moved) / 1000, delta=1e-6 * SHARDS)
        self.assertEqual(value(m, "meshmaster_handoff_pause_master_seconds_count"), SHARDS)
        # The slaves' own measure comes with protocol 1.3 slaves: as many as reported one.
        self.assertEqual(value(m, "meshmaster_handoff_pause_seconds_count"),
                         sum(1 for e in moved if e.get("slave_pause_ms") is not None))
        self.assertEqual(value(m, "meshmaster_events_total", event="migration_completed"), SHARDS)
        self.assertEqual(value(m, "meshmaster_spawn_failures_total"), 0)
        for state in ("unowned", "starting", "running", "stopping", "resuming"):
            expected = SHARDS if state == "running" else 0
            self.assertEqual(value(before, "meshmaster_shards", state=state), expected, state)
            self.assertEqual(value(m, "meshmaster_shards", state=state), expected, state)
        self.assertEqual(value(m, "meshmaster_slaves", state="running"), SLAVES)
        self.assertEqual(value(m, "meshmaster_slaves", state="lost"), 0)
        version = subprocess.run([self.master_binary(), "--version"], capture_output=True, text=True).stdout
        (build,) = series(m, "meshmaster_build_info").items()
        labels = dict(build[0])
        self.assertEqual(build[1], 1)
        self.assertIn(f"meshmaster {labels['version']} (protocol {labels['protocol']})", version)

    def test_frames_are_counted_both_ways(self):
        m, before = self.after, self.before
        connected = sum(1 for e in self.events if e["event"] == "slave_connected")
        self.assertEqual(connected, 2 * SLAVES)
        # Every connection got a challenge and sent a hello: the slaves and the intruders.
        self.assertEqual(value(m, "meshmaster_frames_total", direction="out", event="auth_challenge"),
                         connected + WRONG_SECRETS)
        self.assertEqual(value(m, "meshmaster_frames_total", direction="in", event="slave_hello"),
                         connected + WRONG_SECRETS)
        self.assertEqual(value(m, "meshmaster_frames_total", direction="out", event="welcome"), connected)
        # The restart moved every shard: one resume out and one resumed in for each.
        self.assertEqual(value(m, "meshmaster_frames_total", direction="out", event="resume"), SHARDS)
        self.assertEqual(value(m, "meshmaster_frames_total", direction="in", event="resumed"), SHARDS)
        self.assertEqual(value(before, "meshmaster_frames_total", direction="out", event="start_shard"), SHARDS)
        for direction in ("in", "out"):
            self.assertGreater(value(m, "meshmaster_frames_total", direction=direction, event="heartbeat"), 0)

    def test_wrong_secrets_are_counted_past_the_refusal_limiter(self):
        self.assertEqual(self.refused[0], "error")
        logged = [e for e in self.events if e["event"] == "auth_failed"]
        self.assertEqual(len(logged), BURST)  # the limiter kept the rest from the log ...
        self.assertEqual(value(self.after, "meshmaster_refusals_total", reason="auth_failed"), WRONG_SECRETS)  # ... not from here
        self.assertEqual(value(self.before, "meshmaster_refusals_total", reason="auth_failed"), 0)
        self.assertEqual(value(self.after, "meshmaster_events_total", event="auth_failed"), WRONG_SECRETS)

    def test_heartbeat_rtt_per_slave_that_reported_one(self):
        # A slave's RTT is unknown until its first echo, then known: the slaves with one in the
        # status before the scrape have a series, and every series is a slave with one after it.
        def with_rtt(status):
            return {s["id"] for s in status["slaves"] if s.get("heartbeat_rtt_ms") is not None}
        rtt = {dict(labels)["slave"] for labels in series(self.after, "meshmaster_slave_heartbeat_rtt_seconds")}
        self.assertLessEqual(with_rtt(self.status), rtt)
        self.assertLessEqual(rtt, with_rtt(self.status_after))
        for labels, seconds in series(self.after, "meshmaster_slave_heartbeat_rtt_seconds").items():
            self.assertGreaterEqual(seconds, 0, labels)

    def test_process_metrics(self):
        m = self.after
        self.assertGreater(value(m, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreaterEqual(value(m, "process_virtual_memory_bytes"), value(m, "process_resident_memory_bytes"))
        self.assertGreater(value(m, "process_open_fds"), 3)
        self.assertGreaterEqual(value(m, "process_max_fds"), value(m, "process_open_fds"))
        cpu = value(m, "process_cpu_seconds_total")
        self.assertGreaterEqual(cpu, 0)
        self.assertLessEqual(cpu, self.usage["cpu_s"])  # CPU time only grows: /proc read later says as much or more
        self.assertAlmostEqual(value(m, "process_start_time_seconds"), self.started, delta=0.011)

    def test_an_unreachable_daemon_exits_69(self):
        self.assertEqual(self.unreachable.returncode, 69, self.unreachable.stderr)
        self.assertIn("no meshmaster answers", self.unreachable.stderr)

    def test_the_grafana_dashboard_uses_only_metrics_the_daemon_defines(self):
        with open(os.path.join(SOURCE_DIR, "deploy", "grafana", "meshmaster.json")) as f:
            dashboard = json.load(f)
        self.assertEqual(dashboard["templating"]["list"][0]["type"], "datasource")
        expressions = []
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expressions.append(target["expr"])
                self.assertEqual(target["datasource"]["uid"], "${DS_PROMETHEUS}")
            if "targets" in panel:
                self.assertEqual(panel["datasource"]["uid"], "${DS_PROMETHEUS}")
        self.assertGreaterEqual(len(expressions), 10)
        used = set()
        for expr in expressions:
            for name in re.findall(r"\b((?:meshmaster|process)_[a-z_]+)\b", expr):
                family = family_of(name, self.after["types"])
                self.assertIsNotNone(family, f"{name} (in {expr!r}) is not a metric the daemon defines")
                used.add(family)
        for wanted in ("meshmaster_shards", "meshmaster_slaves", "meshmaster_restarts_total",
                       "meshmaster_handoff_pause_seconds", "meshmaster_migration_duration_seconds",
                       "meshmaster_slave_heartbeat_rtt_seconds", "meshmaster_frames_total",
                       "meshmaster_refusals_total", "process_cpu_seconds_total", "process_resident_memory_bytes"):
            self.assertIn(wanted, used)

    def test_operations_md_lists_every_metric_and_no_other(self):
        with open(os.path.join(SOURCE_DIR, "docs", "operations.md")) as f:
            text = f.read()
        section = re.search(r"^## Metrics\n(.*?)(?=^## )", text, re.S | re.M)
        self.assertIsNotNone(section, "docs/operations.md has no '## Metrics' section")
        rows = re.findall(r"^\| `([a-z_]+)` \| (counter|gauge|histogram) \|", section.group(1), re.M)
        documented = dict(rows)
        self.assertEqual(set(documented), set(self.after["types"]))
        for name, kind in documented.items():
            self.assertEqual(kind, self.after["types"][name], name)

    @classmethod
    def master_binary(cls):
        return os.path.join(os.environ.get("MESHMASTER_BUILD_DIR", os.path.join(SOURCE_DIR, "build", "release")),
                            "master", "meshmaster")


if __name__ == "__main__":
    unittest.main()
