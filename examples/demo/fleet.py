"""Starting and driving a meshmaster fleet from Python: the fake gateway, the daemon with its
bots, and the questions a test or the demo asks of them. Used by scripts/demo, the integration
tests and the handoff benchmark.

Every process is started here and stopped here by PID (never by name); `Fleet.close()` also
kills any slave the daemon left behind, by the PIDs the daemon reported.
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the gateway and the daemon die with the script that started them, even if it is
    killed (a test timeout). The bots then exit on their own: they lose the gateway."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    """A loopback port nobody listens on right now (for a master that must come back on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MESHMASTER_BUILD_DIR", os.path.join(here, "..", "..", "build", "release"))


class Gateway:
    def __init__(self, shards=256, rate=100, resume_window_ms=30000, record=None, extra=(), host="127.0.0.1"):
        binary = os.path.join(build_dir(), "examples", "gateway", "gateway")
        args = [binary, "--listen", f"{host}:0", "--control", "127.0.0.1:0", "--shards", str(shards),
                "--rate", str(rate), "--resume-window-ms", str(resume_window_ms), *extra]
        if record:
            args += ["--record", record]
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                        preexec_fn=_die_with_parent)
        first = json.loads(self.process.stdout.readline())
        self.address = first["listen"]
        host, port = first["control"].rsplit(":", 1)
        self.control = socket.create_connection((host, int(port)))
        self.control_file = self.control.makefile("rw")

    def command(self, line, timeout=30):
        self.control.settimeout(timeout)
        self.control_file.write(line + "\n")
        self.control_file.flush()
        return self.control_file.readline().strip()

    def report(self):
        return json.loads(self.command("report"))

    def drain(self, timeout_ms=60000):
        """Stops emitting and waits until every emitted event was processed (`timeout_ms` is a
        liveness limit: a busy machine only makes the wait longer)."""
        self.command("pause")
        return self.command(f"drain {timeout_ms}", timeout=timeout_ms / 1000 + 5)

    def stop(self):
        for stream in (self.control_file, self.control):
            try:
                stream.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.stderr.close()


def disruptions(events):
    """What went wrong beside the plan, counted from the event log: a rolling restart that is a
    clean handoff all the way has every one of these at 0 (slaves killed or declared lost by the
    hang detector, shards orphaned and recovered from a checkpoint, moves that failed or rolled back)."""
    names = [e["event"] for e in events]
    return {"slaves_lost": names.count("slave_lost"), "slaves_killed": names.count("slave_killed"),
            "shards_orphaned": names.count("shard_orphaned"), "shards_recovered": names.count("shard_recovering"),
            "recoveries_failed": names.count("recovery_failed"),
            "moves_failed": names.count("migration_failed") + names.count("migration_rolled_back")}


class Master:
    """meshmaster run -c <workdir>/meshmaster.toml, spawning bots against `gateway`."""

    def __init__(self, workdir, gateway_address, shards=256, slaves=4, concurrency=16, surge=1,
                 state_padding=256, settings=None, bot_args=(), secret="demo-secret-0123456789", listen=None,
                 wrapper=()):
        self.workdir = workdir
        self.gateway_address = gateway_address
        self.socket = os.path.join(workdir, "meshmaster.sock")
        self.event_log = os.path.join(workdir, "events.jsonl")
        self.binary = os.path.join(build_dir(), "master", "meshmaster")
        bot = os.path.join(build_dir(), "examples", "bot", "bot")
        secret_file = os.path.join(workdir, "secret")
        with open(secret_file, "w") as f:
            f.write(secret + "\n")
        os.chmod(secret_file, 0o600)
        command = [*wrapper, bot, "--gateway", gateway_address, "--state-padding", str(state_padding), *bot_args]
        top = {"listen": listen or "127.0.0.1:0", "shards": shards, "control_socket": self.socket,
               "event_log": self.event_log, "secret_file": secret_file}
        sections = {"slaves": {"count": slaves, "command": command},
                    "restart": {"concurrency": concurrency, "surge": surge}}
        for section, values in (settings or {}).items():
            sections.setdefault(section, {}).update(values)
        lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        self.config = os.path.join(workdir, "meshmaster.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(workdir, "meshmaster.log")
        self.log = None
        self.process = None
        self.seen_pids = set()

    def start(self, env=None):
        """Starts the daemon; `env` adds environment variables (e.g. MESHMASTER_FAILPOINTS)."""
        if self.log:
            self.log.close()
        self.log = open(self.log_path, "a")
        environment = dict(os.environ, **(env or {}))
        self.process = subprocess.Popen([self.binary, "run", "-c", self.config], stdout=self.log, stderr=self.log,
                                        preexec_fn=_die_with_parent, env=environment)
        deadline = time.monotonic() + 60  # a liveness limit: it takes well under a second
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"meshmaster exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError("meshmaster did not open its control socket")
            time.sleep(0.02)
        return self

    def _answers(self):
        """Whether the daemon accepts on its control socket (a crashed one leaves a stale file)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def cli(self, *args, timeout=120):
        return subprocess.run([self.binary, *args, "-s", self.socket], capture_output=True, text=True, timeout=timeout)

    def status(self, summary=False):
        """`status --json`; with `summary`, the control socket's summary form (no row per shard),
        which costs the daemon next to nothing at any fleet size: what a poll should ask for."""
        out = self.cli("status", "--json", *(["--summary"] if summary else []))
        if out.returncode not in (0, 1):  # 1: answered, but the fleet is degraded
            raise RuntimeError(f"status failed: {out.stderr}")
        status = json.loads(out.stdout)
        for slave in status["slaves"]:
            if slave["pid"]:
                self.seen_pids.add(slave["pid"])
        return status

    def wait_for(self, predicate, timeout=30, what="condition", summary=False):
        """Polls status until `predicate` holds; `summary` polls the summary form (the predicate
        then sees no "shards" list)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(summary)
            if predicate(status):
                return status
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}: {json.dumps(self.status(summary))[:2000]}")

    def wait_running(self, timeout=30):
        """Waits until every shard runs and no restart is under way; returns the full status,
        taken once that holds (the polls before it ask for the summary only)."""
        def settled(s):
            return (s["shards_running"] == s["shard_count"] and s["restart"] is None
                    and all(x["phase"] == "running" for x in s["slaves"]))
        deadline = time.monotonic() + timeout
        while True:
            self.wait_for(settled, max(deadline - time.monotonic(), 0.1), "all shards running", summary=True)
            full = self.status()
            if settled(full):
                return full
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for all shards running: {json.dumps(full)[:2000]}")

    def signal(self, sig):
        self.process.send_signal(sig)

    def usage(self):
        """The daemon's CPU time so far (user + system, seconds) and its peak resident set (MiB),
        from /proc: what the master itself costs, apart from its bots."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        peak = 0
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        return {"cpu_s": cpu, "peak_rss_mib": peak}

    def events(self, *types):
        records = []
        with open(self.event_log) as f:
            for line in f:
                record = json.loads(line)
                if not types or record["event"] in types:
                    records.append(record)
        return records

    def stop(self, timeout=60):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGTERM)  # the second one stops at once
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        if self.log:
            self.log.close()
            self.log = None
        return self.process.returncode if self.process else None

    def crash(self):
        """SIGKILL: the master dies at once; its slaves keep running."""
        self.process.kill()
        self.process.wait()

    def _is_our_slave(self, pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                arguments = f.read().split(b"\0")
        except OSError:
            return False
        return self.gateway_address.encode() in arguments  # unique to this fleet: a free port

    def kill_leftovers(self):
        """Kills, by PID, any slave this master started or reported that is still alive."""
        pids = set(self.seen_pids)
        if os.path.exists(self.event_log):
            pids.update(r["pid"] for r in self.events("slave_process_started", "slave_adopted") if r.get("pid"))
        for pid in pids:
            if not self._is_our_slave(pid):
                continue  # exited, and the PID may belong to someone else by now
            for target in (-pid, pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


class Fleet:
    """A gateway plus a master with its bots, in a temporary directory; a context manager."""

    def __init__(self, shards=256, slaves=4, rate=100, concurrency=16, surge=1, state_padding=256,
                 settings=None, bot_args=(), resume_window_ms=30000, listen=None, wrapper=(), gateway_host="127.0.0.1"):
        self.dir = tempfile.TemporaryDirectory(prefix="meshmaster-")
        self.gateway = Gateway(shards=shards, rate=rate, resume_window_ms=resume_window_ms,
                               record=os.path.join(self.dir.name, "processed.jsonl"), host=gateway_host)
        self.master = Master(self.dir.name, self.gateway.address, shards=shards, slaves=slaves,
                             concurrency=concurrency, surge=surge, state_padding=state_padding,
                             settings=settings, bot_args=bot_args, listen=listen, wrapper=wrapper)

    def __enter__(self):
        self.master.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.master.stop()
        finally:
            self.master.kill_leftovers()
            self.gateway.stop()
            self.dir.cleanup()
