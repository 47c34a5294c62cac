#!/usr/bin/python3
"""The slave link over TLS ([tls] cert and key): rolling restarts lose nothing and the spawned
slaves are told how to verify the master; a cleartext peer is refused and silent ones are cut at
the handshake deadline, all logged, while the master keeps serving; a slave whose CA or expected server name does not match
the master's certificate never joins, while the same slave with the right ones does.

The certificates are self-signed, made at test time with the openssl command-line tool."""
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

from fake_slave import EVENTS, frame
from support import Fleet, assert_single_owners, assert_exactly_once

BUILD = os.environ.get("MESHMASTER_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "release"))
MESHMASTER = os.path.join(BUILD, "master", "meshmaster")
THREAD_SLAVE = os.path.join(BUILD, "tests", "integration", "thread_slave")
NAME = "meshmaster-test"
SECRET = "demo-secret-0123456789"  # the one fleet.Master writes into its secret file
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal


def make_certificate(directory, stem, name=NAME):
    """A self-signed P-256 certificate for `name` (CN and subjectAltName) and its key."""
    cert, key = os.path.join(directory, f"{stem}.pem"), os.path.join(directory, f"{stem}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key


def tls_settings(cert, key, **extra):
    return {"tls": {"cert": cert, "key": key, **extra}}


def listen_address(status):
    host, port = status["listen"].rsplit(":", 1)
    return host, int(port)


def receive_all(sock, timeout):
    """Everything the peer sends until it closes (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True


def gone(pid):
    """The process has exited (or is a zombie waiting for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Tls(unittest.TestCase):
    def setUp(self):
        self.pki = tempfile.TemporaryDirectory(prefix="meshmaster-tls-")
        self.addCleanup(self.pki.cleanup)
        self.cert, self.key = make_certificate(self.pki.name, "master")

    def assert_all_stopped(self, fleet, extra_pids=()):
        """After the fleet closed: the master and every slave it reported are gone, and its port is free."""
        self.assertIsNotNone(fleet.master.process.poll(), "the master still runs")
        pids = set(fleet.master.seen_pids) | set(extra_pids)
        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
            time.sleep(0.05)
        self.assertEqual([pid for pid in pids if not gone(pid)], [], "processes left running")

    def test_rolling_restarts_over_tls(self):
        with Fleet(shards=16, slaves=2, rate=300, concurrency=4, state_padding=2048,
                   settings=tls_settings(self.cert, self.key, server_name=NAME)) as fleet:
            master = fleet.master
            status = master.wait_running()
            assert_single_owners(self, status)
            host, port = listen_address(status)

            # The master speaks TLS 1.3 with this certificate, and the protocol runs inside it: the
            # first frame is the challenge.
            context = ssl.create_default_context(cafile=self.cert)
            with context.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=NAME) as probe:
                self.assertEqual(probe.version(), "TLSv1.3")
                header = b""
                while len(header) < 8:
                    chunk = probe.recv(8 - len(header))
                    self.assertTrue(chunk, "the master closed before its challenge")
                    header += chunk
                self.assertEqual(struct.unpack("<II", header)[0], EVENTS["auth_challenge"])

            # The spawned slaves were told how to verify the master.
            pid = status["slaves"][0]["pid"]
            with open(f"/proc/{pid}/environ", "rb") as f:
                environment = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            self.assertEqual(environment[b"MESHMASTER_TLS_CA"].decode(), os.path.abspath(self.cert))
            self.assertEqual(environment[b"MESHMASTER_TLS_SERVER_NAME"].decode(), NAME)

            for n in range(2):
                out = master.cli("restart", "--wait")
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("completed", out.stdout)
                status = master.wait_running()
                assert_single_owners(self, status)
                self.assertTrue(all(s["id"].endswith(f"-g{n + 2}") for s in status["slaves"]), status["slaves"])
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
            events = master.events()
            with open(master.log_path) as f:
                started = [line for line in f if '"meshmaster started"' in line]
        self.assert_all_stopped(fleet)

        assert_exactly_once(self, report)
        self.assertEqual(report["handoffs"], 2 * 16)
        names = [e["event"] for e in events]
        self.assertEqual(names.count("restart_completed"), 2)
        self.assertEqual(names.count("migration_completed"), 2 * 16)
        self.assertEqual(names.count("migration_failed") + names.count("migration_rolled_back"), 0)
        self.assertEqual(names.count("tls_handshake_failed"), 0, [e for e in events if e["event"] == "tls_handshake_failed"])
        self.assertIn('"tls":true', started[0])

    def test_cleartext_and_silent_peers_are_refused(self):
        with Fleet(shards=4, slaves=2, rate=100,
                   settings={**tls_settings(self.cert, self.key), "timeouts": {"handshake": "1s"}}) as fleet:
            master = fleet.master
            status = master.wait_running()
            host, port = listen_address(status)

            # A slave that speaks the protocol in cleartext: its hello is not a TLS ClientHello.
            cleartext = socket.create_connection((host, port), timeout=10)
            cleartext.sendall(frame(EVENTS["slave_hello"], {"version_major": 1, "version_minor": 1,
                                                            "slave_id": "cleartext", "nonce": b"\0" * 32}))
            # A peer that connects and never starts TLS. The master's deadline starts after this
            # connect began.
            opened = time.monotonic()
            silent = socket.create_connection((host, port), timeout=10)
            # And one that finishes TLS but never authenticates. Ragged EOFs raise: the master must
            # end the TLS session properly (close_notify). (Python's default context ignores an
            # unexpected EOF; this one must not.)
            context = ssl.create_default_context(cafile=self.cert)
            context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
            mute = context.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=NAME,
                                       suppress_ragged_eofs=False)

            answer, closed = receive_all(cleartext, LIVENESS)
            cleartext.close()
            self.assertTrue(closed, "the cleartext peer was not disconnected")
            # At most a TLS alert record (content type 21), never a frame of the protocol.
            self.assertTrue(answer == b"" or answer[0] == 21, answer[:16])
            self.assertNotEqual(answer[:4], struct.pack("<I", EVENTS["auth_challenge"]))

            answer, closed = receive_all(silent, LIVENESS)
            silent_for = time.monotonic() - opened
            silent.close()
            self.assertTrue(closed, "the silent peer outlived the handshake deadline")
            self.assertEqual(answer, b"")
            # Not cut before the deadline (a lower bound, which a slow machine cannot break). How
            # late after it is up to the machine; the handshake_timeout records below say why.
            self.assertGreaterEqual(silent_for, 0.9)

            # The challenge, then at the deadline the fatal handshake_timeout error, then close_notify.
            answer, closed = receive_all(mute, LIVENESS)
            mute.close()
            self.assertTrue(closed, "the silent TLS peer outlived the handshake deadline")
            frames = []
            while answer:
                event, length = struct.unpack_from("<II", answer)
                frames.append(event)
                answer = answer[8 + length:]
            self.assertEqual(frames, [EVENTS["auth_challenge"], EVENTS["error"]])

            # The master keeps answering and serving its slaves.
            status = master.status()
            assert_single_owners(self, status)
            self.assertEqual(sorted(s["id"] for s in status["slaves"]), ["s0-g1", "s1-g1"])
            deadline = time.monotonic() + LIVENESS
            while time.monotonic() < deadline and len(master.events("handshake_timeout")) < 2:
                time.sleep(0.05)
            failed = master.events("tls_handshake_failed")
            timeouts = master.events("handshake_timeout")
            joined = [e for e in master.events("slave_joined", "slave_connected") if e.get("slave") == "cleartext"]

            # TLS settings only change with a restart: a reload that touches them names them, not applied.
            with open(master.config) as f:
                config = f.read()
            with open(master.config, "w") as f:
                f.write(config.replace("[tls]\n", f'[tls]\nserver_name = "{NAME}"\n'))
            reload = master.cli("reload")
            not_applied = master.events("config_not_applied")
        self.assert_all_stopped(fleet)

        self.assertEqual(reload.returncode, 1, reload.stdout + reload.stderr)
        self.assertIn("NOT applied: tls.server_name: these settings change only when the meshmaster daemon itself "
                      "restarts", reload.stderr)
        self.assertEqual([e["reason"].split(":")[0] for e in not_applied], ["tls.server_name"])

        self.assertEqual(len(failed), 1, failed)
        self.assertTrue(failed[0]["reason"].startswith("tls handshake failed: "), failed[0])
        self.assertTrue(failed[0]["slave"].startswith("127.0.0.1:"), failed[0])  # the peer's address
        self.assertEqual(failed[0]["address"], failed[0]["slave"])
        self.assertEqual(len(timeouts), 2, timeouts)
        self.assertEqual(joined, [])

    def test_settings_are_checked_before_anything_runs(self):
        other_cert, other_key = make_certificate(self.pki.name, "other")
        missing = os.path.join(self.pki.name, "missing.pem")
        workdir = self.pki.name

        def config(tls):
            path = os.path.join(workdir, "meshmaster.toml")
            with open(path, "w") as f:
                f.write(f'listen = "127.0.0.1:0"\ncontrol_socket = "{workdir}/m.sock"\n'
                        f'event_log = "{workdir}/events.jsonl"\nshards = 2\n'
                        f'[slaves]\ncount = 1\ncommand = ["/bin/false"]\n[tls]\n{tls}')
            return path

        # Half a TLS configuration is a configuration error (exit 78), found by check-config.
        for tls, expected in ((f'cert = "{self.cert}"\n', "tls.cert and tls.key: set both"),
                              (f'key = "{self.key}"\n', "tls.cert and tls.key: set both"),
                              (f'ca = "{self.cert}"\n', "tls.ca and tls.server_name: need tls.cert and tls.key")):
            with self.subTest(tls=tls):
                out = subprocess.run([MESHMASTER, "check-config", "-c", config(tls)], capture_output=True, text=True,
                                     timeout=30)
                self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
                self.assertIn(expected, out.stderr)

        # Files that cannot be used stop the start, naming the file, before any slave is spawned.
        for tls, expected in ((f'cert = "{missing}"\nkey = "{self.key}"\n',
                               f"cannot read the TLS certificate file (tls.cert) {missing}"),
                              (f'cert = "{self.cert}"\nkey = "{missing}"\n',
                               f"cannot read the TLS key file (tls.key) {missing}"),
                              (f'cert = "{self.cert}"\nkey = "{self.cert}"\n',
                               f"cannot load the TLS private key {self.cert}"),
                              (f'cert = "{self.cert}"\nkey = "{other_key}"\n',
                               f"cannot load the TLS private key {other_key}: key values mismatch"),
                              (f'cert = "{self.cert}"\nkey = "{self.key}"\nca = "{missing}"\n',
                               f"cannot read the TLS CA file (tls.ca) {missing}")):
            with self.subTest(tls=tls):
                env = dict(os.environ, MESHMASTER_SECRET=SECRET)
                out = subprocess.run([MESHMASTER, "run", "-c", config(tls)], capture_output=True, text=True,
                                     timeout=30, env=env)
                self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
                self.assertIn(expected, out.stderr)
                self.assertNotIn("meshmaster started", out.stderr)

    def test_a_slave_that_cannot_verify_the_master_never_joins(self):
        other_cert, _ = make_certificate(self.pki.name, "other")  # same name, different key: not the master's
        with Fleet(shards=4, slaves=2, rate=100, settings=tls_settings(self.cert, self.key)) as fleet:
            master = fleet.master
            status = master.wait_running()
            started = {}

            def external(slave_id, ca, server_name=None):
                env = dict(os.environ, MESHMASTER_ADDR=status["listen"], MESHMASTER_SLAVE_ID=slave_id,
                           MESHMASTER_SECRET=SECRET, MESHMASTER_TLS_CA=ca)
                env.pop("MESHMASTER_TLS_SERVER_NAME", None)
                if server_name:
                    env["MESHMASTER_TLS_SERVER_NAME"] = server_name
                log = open(os.path.join(self.pki.name, f"{slave_id}.log"), "w+")
                self.addCleanup(log.close)
                process = subprocess.Popen([THREAD_SLAVE], env=env, stdout=log, stderr=log)
                started[slave_id] = (process, log)
                return process

            try:
                wrong_ca = external("wrong-ca", other_cert)
                wrong_name = external("wrong-name", self.cert, "someone-else")
                # The control: the same program with the master's CA and name gets in.
                right = external("right", self.cert, NAME)

                def seen():
                    """The right slave joined, each wrong one failed its handshake (and retried),
                    and the master logged two failed handshakes at least."""
                    joined = any(e["event"] == "slave_connected" and e.get("slave") == "right" for e in master.events())
                    failed = len(master.events("tls_handshake_failed"))
                    logs = []
                    for slave_id in ("wrong-ca", "wrong-name"):
                        log = started[slave_id][1]
                        log.seek(0)
                        logs.append(log.read())
                    return joined and failed >= 2 and "(retrying)" in logs[0] and "hostname mismatch" in logs[1]

                # For 2.5 s at least, and until all of that was seen, the wrong slaves keep retrying.
                shortest = time.monotonic() + 2.5
                deadline = time.monotonic() + LIVENESS
                while time.monotonic() < shortest or (not seen() and time.monotonic() < deadline):
                    time.sleep(0.1)
                    self.assertIsNone(wrong_ca.poll(), "the slave with the wrong CA gave up instead of retrying")
                    self.assertIsNone(wrong_name.poll(), "the slave expecting another name gave up")
                events = master.events()
                status = master.status()
            finally:
                for process, _ in started.values():
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                    process.wait()
            logs = {}
            for slave_id, (_, log) in started.items():
                log.seek(0)
                logs[slave_id] = log.read()
        self.assert_all_stopped(fleet, [p.pid for p, _ in started.values()])

        by_slave = {}
        for e in events:
            by_slave.setdefault(e.get("slave"), []).append(e["event"])
        self.assertIn("slave_connected", by_slave.get("right", []), logs["right"])
        self.assertNotIn("wrong-ca", by_slave)
        self.assertNotIn("wrong-name", by_slave)
        self.assertNotIn("wrong-ca", [s["id"] for s in status["slaves"]])
        self.assertNotIn("wrong-name", [s["id"] for s in status["slaves"]])
        self.assertIn("certificate verify failed", logs["wrong-ca"])
        self.assertIn("self-signed certificate", logs["wrong-ca"])
        self.assertIn("(retrying)", logs["wrong-ca"])
        self.assertIn("hostname mismatch", logs["wrong-name"])
        # The master saw them give up on its certificate.
        failed = [e for e in events if e["event"] == "tls_handshake_failed"]
        self.assertGreaterEqual(len(failed), 2, failed)
        self.assertTrue(all("alert" in e["reason"] for e in failed), failed)


if __name__ == "__main__":
    unittest.main(verbosity=2)
