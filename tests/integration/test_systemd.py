#!/usr/bin/python3
"""The daemon under systemd, as systemd sees it: the sd_notify(3) messages on a socket this test plays
(readiness, status, reload, stop, watchdog), and the unit file in deploy/systemd/."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from support import Fleet

SOURCE = os.environ.get("MESHMASTER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHMASTER_BUILD_DIR", "build/release")
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal
WATCHDOG_USEC = 400000


class NotifySocket:
    """An AF_UNIX datagram socket where NOTIFY_SOCKET points; collects each datagram with its arrival time."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, predicate, after=0, what="message"):
        """The first message from index `after` on that `predicate` accepts: (index, fields)."""
        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline:
            for i, (_, fields) in enumerate(self.snapshot()[after:], after):
                if predicate(fields):
                    return i, fields
            time.sleep(0.02)
        raise TimeoutError(f"no {what}; got {[m for _, m in self.snapshot()]}")


class Notify(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="meshmaster-notify-")
        self.addCleanup(self.dir.cleanup)
        self.notify = NotifySocket(self.dir.name)
        self.addCleanup(self.notify.close)

    def start(self, fleet):
        self.addCleanup(fleet.close)
        # WATCHDOG_PID stays unset: the daemon's PID is not known before it starts, and
        # sd_watchdog_enabled(3) checks it only when it is set.
        fleet.master.start(env={"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        return fleet.master

    def test_ready_status_reload_watchdog_and_stop_in_order(self):
        master = self.start(Fleet(shards=16, slaves=2, rate=50))
        at, ready = self.notify.wait_for(lambda m: "READY" in m, what="READY=1")
        status = master.status()
        self.assertEqual(status["shards_running"], 16, "READY=1 only once every shard runs")
        self.assertEqual(ready["STATUS"], "16/16 shards running")
        # systemd's variables are the master's alone: a slave that inherited NOTIFY_SOCKET could
        # speak for the service.
        for slave in status["slaves"]:
            with open(f"/proc/{slave['pid']}/environ", "rb") as f:
                names = {entry.split(b"=", 1)[0] for entry in f.read().split(b"\0") if entry}
            self.assertFalse(names & {b"NOTIFY_SOCKET", b"WATCHDOG_USEC"}, slave["id"])
        before = [m for _, m in self.notify.snapshot()[:at]]
        for m in before:
            if "STATUS" in m:
                running, total = m["STATUS"].split(" ")[0].split("/")
                self.assertEqual(total, "16")
                self.assertLess(int(running), 16, "a full count comes with READY=1, not before")

        # Reload: RELOADING=1 with the monotonic time it began, then READY=1 again.
        before_reload = time.clock_gettime(time.CLOCK_MONOTONIC)
        out = master.cli("reload")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        at, reloading = self.notify.wait_for(lambda m: "RELOADING" in m, at + 1, "RELOADING=1")
        self.assertEqual(reloading["RELOADING"], "1")
        began = int(reloading["MONOTONIC_USEC"]) / 1e6
        self.assertGreaterEqual(began, before_reload)
        self.assertLessEqual(began, time.clock_gettime(time.CLOCK_MONOTONIC))
        at, _ = self.notify.wait_for(lambda m: m.get("READY") == "1", at + 1, "READY=1 after the reload")
        # SIGHUP, as ExecReload sends it, the same.
        master.signal(signal.SIGHUP)
        at, _ = self.notify.wait_for(lambda m: "RELOADING" in m, at + 1, "RELOADING=1 on SIGHUP")
        at, _ = self.notify.wait_for(lambda m: m.get("READY") == "1", at + 1, "READY=1 after SIGHUP")

        # The watchdog: pinged (every WATCHDOG_USEC/2) from the start on, and still now.
        first, _ = self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", what="WATCHDOG=1")
        self.assertLess(first, at, "pinged before the reloads already")
        after = len(self.notify.snapshot())
        for _ in range(3):  # three more, not a speed: the limit is LIVENESS
            after, _ = self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", after, "WATCHDOG=1 going on")
            after += 1

        # A stop: STOPPING=1, then the daemon exits.
        out = master.cli("stop")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.notify.wait_for(lambda m: m.get("STOPPING") == "1", at + 1, "STOPPING=1")
        self.assertEqual(master.process.wait(LIVENESS), 0)
        stopping = [m for _, m in self.notify.snapshot() if "STOPPING" in m]
        self.assertEqual(len(stopping), 1, "STOPPING=1 once")
        states = [k for _, m in self.notify.snapshot() for k in ("READY", "RELOADING", "STOPPING") if k in m]
        self.assertEqual(states, ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"])

    def test_with_external_slaves_ready_comes_at_once_and_sigterm_says_stopping(self):
        master = self.start(Fleet(shards=4, slaves=1, rate=50, settings={"slaves": {"spawn": False}}))
        _, ready = self.notify.wait_for(lambda m: "READY" in m, what="READY=1")
        self.assertEqual(ready["STATUS"], "0/4 shards running")
        master.signal(signal.SIGTERM)
        self.notify.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
        self.assertEqual(master.process.wait(LIVENESS), 0)


class UnitFile(unittest.TestCase):
    UNIT = os.path.join(SOURCE, "deploy", "systemd", "meshmaster.service")

    def test_systemd_analyze_verify_accepts_it_without_a_warning(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is missing (Debian package systemd)")
        with open(self.UNIT) as f:
            text = f.read()
        # verify insists that ExecStart= names an executable: the installed path is not there in a
        # build tree, so a copy of the unit points at the built binary instead (nothing else changes).
        built = os.path.abspath(os.path.join(BUILD, "master", "meshmaster"))
        self.assertIn("ExecStart=/usr/bin/meshmaster run -c /etc/meshmaster/meshmaster.toml\n", text)
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "meshmaster.service")
            with open(copy, "w") as f:
                f.write(text.replace("ExecStart=/usr/bin/meshmaster ", f"ExecStart={built} "))
            out = subprocess.run([analyze, "verify", copy], capture_output=True, text=True, timeout=LIVENESS)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stderr, "", "no warning either (an unknown or misspelt key is one)")

    def test_what_replacing_the_master_relies_on(self):
        with open(self.UNIT) as f:
            settings = [line.strip() for line in f if "=" in line and not line.startswith("#")]
        for wanted in ("Type=notify", "KillMode=process", "ExecReload=/bin/kill -HUP $MAINPID", "User=meshmaster",
                       "RuntimeDirectory=meshmaster", "StateDirectory=meshmaster", "LogsDirectory=meshmaster"):
            self.assertIn(wanted, settings)
        self.assertTrue(any(s.startswith("WatchdogSec=") for s in settings))


if __name__ == "__main__":
    unittest.main(verbosity=2)
