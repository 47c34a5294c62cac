#!/usr/bin/python3
"""The mesh over real UDP between processes (tests/bench/mesh/mesh_peer): in two network namespaces
joined through a bridge, with nftables dropping 10 % of the packets each way at random, 100,000
reliable messages arrive exactly once, in order, every byte checked, and thousands of concurrent
requests each end in exactly one outcome. On loopback: a peer with the wrong key gets nothing, and
a node going offline answers what is in flight and refuses the rest with `stopped`."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from support import free_port  # noqa: E402

BUILD = os.environ.get("MESHMASTER_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "release"))
PEER = os.path.join(BUILD, "tests", "bench", "mesh", "mesh_peer")


class Server:
    """A mesh_peer server, stopped (SIGTERM, then SIGKILL) and reaped by close()."""

    def __init__(self, port, prefix=(), bind="127.0.0.1", extra=()):
        self.process = subprocess.Popen([*prefix, PEER, "server", "--port", str(port), "--bind", bind, *extra],
                                        stdout=subprocess.DEVNULL)
        if prefix:
            time.sleep(0.2)  # in a namespace: the client keeps probing until it answers
            return
        # Until it answers: clients probe for 5 s only, and a busy machine may take longer to start it.
        deadline = time.monotonic() + LIVENESS
        while nodes_of(port) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"mesh_peer server on port {port} did not come up")
            time.sleep(0.05)

    def close(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def client(*args, prefix=(), timeout=180):
    out = subprocess.run([*prefix, PEER, "client", *args], capture_output=True, text=True, timeout=timeout)
    result = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None
    return out.returncode, result, out.stderr


@unittest.skipUnless(os.geteuid() == 0 and netns.available(), "needs root and network namespaces")
class LossyNetwork(unittest.TestCase):
    # One network and one server for the class: namespaces and veths are slow to make and to
    # go away (a veth outlives its namespace for a moment, and the next one may want its name).
    @classmethod
    def setUpClass(cls):
        cls.net = netns.Network(["a", "b"])
        try:
            cls.server_host = f"{cls.net.subnet}.10"  # namespace a
            cls.in_a = ["ip", "netns", "exec", cls.net.namespace("a")]
            cls.in_b = ["ip", "netns", "exec", cls.net.namespace("b")]
            cls.port = 7400
            cls.server = Server(cls.port, cls.in_a, bind=cls.server_host)
            cls.net.drop("a", 10)  # 10 % of what enters a and of what leaves it: each way
        except Exception:
            cls.net.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.close()
        finally:
            cls.net.close()

    def test_100000_messages_exactly_once_in_order_through_10_percent_loss(self):
        rc, r, err = client("--host", self.server_host, "--bind", f"{self.net.subnet}.11", "--port", str(self.port),
                            "--test", "oneway", "--count", "100000", "--size", "64", prefix=self.in_b)
        self.assertEqual(rc, 0, err)
        self.assertEqual((r["received"], r["out_of_order"], r["corrupt"]), (100000, 0, 0))
        self.assertTrue(r["exactly_once_in_order"])
        self.assertGreater(r["retransmitted_ppm"], 0, "nothing was lost: is the loss rule in place?")

    def test_large_messages_through_loss(self):
        rc, r, err = client("--host", self.server_host, "--bind", f"{self.net.subnet}.11", "--port", str(self.port),
                            "--test", "bulk", "--count", "300", "--size", "65536", prefix=self.in_b)
        self.assertEqual(rc, 0, err)
        self.assertTrue(r["exactly_once_in_order"], r)

    def test_every_request_gets_exactly_one_outcome(self):
        rc, r, err = client("--host", self.server_host, "--bind", f"{self.net.subnet}.11", "--port", str(self.port),
                            "--test", "requests", "--count", "5000", "--concurrency", "64", prefix=self.in_b)
        self.assertEqual(rc, 0, err)
        self.assertEqual(r["outcomes"], 5000)
        self.assertEqual(r["wrong_bodies"], 0)
        self.assertEqual(r["responses"], 5000, "a reliable transport answers every request despite the loss")


class Loopback(unittest.TestCase):
    def test_1400_byte_datagrams_with_and_without_udp_gso_gro(self):
        # On loopback a GSO run reaches a GRO socket whole: the server reads it as one and cuts it.
        # Without offload (--no-offload, as on kernels without it) every datagram goes alone.
        for offload in ([], ["--no-offload"]):
            with self.subTest(offload=offload or "on"):
                port = free_port()
                server = Server(port, extra=["--datagram", "1400", *offload])
                self.addCleanup(server.close)
                rc, r, err = client("--port", str(port), "--datagram", "1400", *offload, "--test", "oneway",
                                    "--count", "100000", "--size", "64", timeout=60)
                self.assertEqual(rc, 0, err)
                self.assertTrue(r["exactly_once_in_order"], r)
                with tempfile.NamedTemporaryFile("w") as key:
                    key.write(BENCH_KEY)
                    key.flush()
                    out = subprocess.run([MESHMASTER, "mesh", "nodes", f"127.0.0.1:{port}", "--key-file", key.name,
                                          "--json", *ANSWER_WITHIN], capture_output=True, text=True, timeout=LIVENESS)
                self.assertEqual(out.returncode, 0, out.stderr)
                offloaded = json.loads(out.stdout)["self"]["offload"]
                if offload:
                    self.assertEqual((offloaded["gso"], offloaded["gro"], offloaded["gro_reads"]), (False, False, 0))
                else:
                    self.assertGreater(offloaded["gro_reads"], 0, offloaded)

    def test_a_peer_with_the_wrong_key_gets_nothing(self):
        port = free_port()
        server = Server(port)
        self.addCleanup(server.close)
        rc, _, err = client("--port", str(port), "--test", "rr", "--count", "10", "--secret", "not-the-cluster-key-0000",
                            timeout=30)
        self.assertEqual(rc, 69, err)
        self.assertIn("no answer", err)
        rc, r, err = client("--port", str(port), "--test", "rr", "--count", "100", timeout=30)
        self.assertEqual(rc, 0, err)

    def test_going_offline_answers_in_flight_and_stops_the_rest(self):
        port = free_port()
        server = Server(port)
        self.addCleanup(server.close)
        c = subprocess.Popen([PEER, "client", "--port", str(port), "--test", "requests", "--count", "2000000",
                              "--concurrency", "32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The goodbye must find the client talking to the server: wait until the server has
            # answered some of its requests (not for a fixed time, which a busy machine outruns).
            wait_for_peer_messages(port, "client", 100)
            self.assertEqual(server.close(signal.SIGTERM), 0)
            # Liveness only: the client still has to end its remaining requests, which takes
            # seconds of CPU (9 s on a busy CI machine). That no request waited for its 3 s
            # timeout is what shows the goodbye worked.
            out, err = c.communicate(timeout=300)
        finally:
            if c.poll() is None:
                c.kill()
                c.wait()
        r = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(c.returncode, 0, err)
        self.assertEqual(r["outcomes"], 2000000, "each request ended in exactly one outcome")
        self.assertGreater(r["stopped"], 0, "requests after the goodbye are refused with stopped")
        self.assertEqual(r["timeouts"], 0, "nothing was left to time out")


MESHMASTER = os.path.join(BUILD, "master", "meshmaster")
BENCH_KEY = "mesh-bench-secret-0123456789"  # mesh_peer's default key
LIVENESS = 60  # seconds: a limit on waiting for what takes a second at most, never a speed goal
ANSWER_WITHIN = ("--timeout", "30000")  # for `meshmaster mesh` commands that must get an answer


def nodes_of(port):
    """`meshmaster mesh nodes` of the mesh_peer on `port`: its peers by id; None if it does not answer."""
    with tempfile.NamedTemporaryFile("w") as key:
        key.write(BENCH_KEY)
        key.flush()
        out = subprocess.run([MESHMASTER, "mesh", "nodes", f"127.0.0.1:{port}", "--key-file", key.name, "--json"],
                             capture_output=True, text=True, timeout=LIVENESS)
    return {p["id"]: p for p in json.loads(out.stdout)["peers"]} if out.returncode == 0 else None


def wait_for_peer_messages(port, peer, count):
    deadline = time.monotonic() + LIVENESS
    while (nodes_of(port) or {}).get(peer, {}).get("messages_in", 0) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server on {port} did not hear {count} messages from {peer}")
        time.sleep(0.05)


class Tools(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.server = Server(self.port)
        self.addCleanup(self.server.close)
        key = tempfile.NamedTemporaryFile("w", delete=False)
        key.write(BENCH_KEY)
        key.close()
        self.key = key.name
        self.addCleanup(os.unlink, key.name)

    def meshmaster(self, *args):
        return subprocess.run([MESHMASTER, "mesh", *args], capture_output=True, text=True, timeout=LIVENESS)

    def test_ping_answers_with_the_round_trip_and_stays_silent_for_another_key(self):
        out = self.meshmaster("ping", f"127.0.0.1:{self.port}", "--key-file", self.key, "-n", "3", "-i", "50", *ANSWER_WITHIN)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.count("reply from server (type bench)"), 3, out.stdout)
        self.assertIn("3 probes sent, 3 replies, 0% loss", out.stdout)
        out = self.meshmaster("ping", f"127.0.0.1:{self.port}", "--insecure", "-n", "1", "--timeout", "200")
        self.assertEqual(out.returncode, 1)
        self.assertIn("100% loss", out.stdout)

    def test_nodes_lists_the_peers_of_a_running_node(self):
        rc, _, err = client("--port", str(self.port), "--test", "rr", "--count", "50", timeout=30)
        self.assertEqual(rc, 0, err)
        out = self.meshmaster("nodes", f"127.0.0.1:{self.port}", "--key-file", self.key, "--json", *ANSWER_WITHIN)
        self.assertEqual(out.returncode, 0, out.stderr)
        status = json.loads(out.stdout)
        self.assertEqual(status["self"]["id"], "server")
        self.assertTrue(status["self"]["authenticated"])
        peers = {p["id"]: p for p in status["peers"]}
        self.assertIn("client", peers)
        self.assertGreater(peers["client"]["packets_in"], 50)
        self.assertGreater(peers["client"]["messages_in"], 50)

    def test_nodes_lists_only_the_mesh_however_often_it_is_asked(self):
        rc, _, err = client("--port", str(self.port), "--test", "rr", "--count", "5", timeout=30)
        self.assertEqual(rc, 0, err)
        for _ in range(3):
            out = self.meshmaster("nodes", f"127.0.0.1:{self.port}", "--key-file", self.key, "--json", *ANSWER_WITHIN)
            self.assertEqual(out.returncode, 0, out.stderr)
        # Each run was a visitor (and the one asking still is, while it asks): never a peer.
        status = json.loads(out.stdout, parse_float=lambda literal: self.assertNotIn("e", literal.lower()) or float(literal))
        self.assertEqual([p["id"] for p in status["peers"]], ["client"])
        self.assertEqual(status["visitors"], 1)
        table = self.meshmaster("nodes", f"127.0.0.1:{self.port}", "--key-file", self.key, *ANSWER_WITHIN)
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertNotIn("meshmaster-cli", table.stdout)
        self.assertIn("client", table.stdout)

    def test_a_peer_that_falls_silent_goes_offline(self):
        rc, _, err = client("--port", str(self.port), "--test", "rr", "--count", "20", timeout=30)
        self.assertEqual(rc, 0, err)  # the client exits without a goodbye: like a crash, to the server
        peers = {}
        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline:
            out = self.meshmaster("nodes", f"127.0.0.1:{self.port}", "--key-file", self.key, "--json", *ANSWER_WITHIN)
            peers = {p["id"]: p for p in json.loads(out.stdout)["peers"]}
            if not peers["client"]["online"]:
                break
            time.sleep(0.2)
        self.assertFalse(peers["client"]["online"], "silent for offline_after (2 s): offline")
        self.assertGreaterEqual(peers["client"]["last_heard_ms"], 1900)

    def test_nodes_from_redis(self):
        port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                  "no"], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + LIVENESS
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
                self.assertLess(time.monotonic(), deadline, "redis-server did not come up")
                time.sleep(0.05)
            record = {"v": 1, "id": "bot-7", "type": "bot", "host": "127.0.0.1", "port": 7407, "incarnation": "99",
                      "values": {"shards": "0-15"}}
            subprocess.run(["redis-cli", "-p", str(port), "SET", "meshmaster:mesh:node:bot-7", json.dumps(record), "PX", "10000"],
                           check=True, capture_output=True)
            out = self.meshmaster("nodes", "--redis", f"127.0.0.1:{port}", "--json", *ANSWER_WITHIN)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout), [{k: v for k, v in record.items() if k != "v"}])
            out = self.meshmaster("nodes", "--redis", f"127.0.0.1:{port}", *ANSWER_WITHIN)
            self.assertIn("bot-7", out.stdout)
            self.assertIn("shards=0-15", out.stdout)
        finally:
            redis.terminate()
            redis.wait(10)


class StaticDiscovery(unittest.TestCase):
    def test_a_node_finds_a_static_address_that_comes_up_later_and_both_become_members(self):
        port_a, port_b = free_port(), free_port()
        a = Server(port_a, extra=("--id", "a", "--static", f"127.0.0.1:{port_b}"))
        self.addCleanup(a.close)
        time.sleep(0.7)  # b is not there yet: a keeps probing
        b = Server(port_b, extra=("--id", "b"))
        self.addCleanup(b.close)
        key = tempfile.NamedTemporaryFile("w", delete=False)
        key.write(BENCH_KEY)
        key.close()
        self.addCleanup(os.unlink, key.name)

        def members(port):
            out = subprocess.run([MESHMASTER, "mesh", "nodes", f"127.0.0.1:{port}", "--key-file", key.name, "--json",
                                  *ANSWER_WITHIN], capture_output=True, text=True, timeout=LIVENESS)
            peers = json.loads(out.stdout)["peers"] if out.returncode == 0 else []
            return {p["id"] for p in peers if p["member"] and p["online"] and p["type"] == "bench"}  # not the CLI itself

        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline and not (members(port_a) == {"b"} and members(port_b) == {"a"}):
            time.sleep(0.2)
        self.assertEqual(members(port_a), {"b"})
        self.assertEqual(members(port_b), {"a"})


class Embedded(unittest.TestCase):
    """Embedded discovery: bots run mesh nodes, announce them to meshmaster in their hellos, and get
    the fleet's membership back; the key comes from the fleet secret. No other configuration."""

    def peers_of(self, master, address):
        out = subprocess.run([MESHMASTER, "mesh", "nodes", address, "-c", master.config, "--json", *ANSWER_WITHIN],
                             capture_output=True, text=True, timeout=LIVENESS)
        self.assertEqual(out.returncode, 0, out.stderr)
        return {p["id"]: p for p in json.loads(out.stdout)["peers"] if p["member"]}

    def wait_for_mesh(self, master, expected, timeout=LIVENESS):
        """Every bot's node lists exactly the other bots as members (from the master's lists, not
        from their probes: the bots do not learn from probes), online and answering."""
        deadline = time.monotonic() + timeout
        while True:
            status = master.status()
            nodes = {s["id"]: s["mesh"] for s in status["slaves"] if s["phase"] == "running"}
            views = {}
            if set(nodes) == expected and all(nodes.values()):
                views = {slave: self.peers_of(master, address) for slave, address in nodes.items()}
                if all(set(v) == expected - {slave} and all(p["online"] and p["messages_in"] > 0 for p in v.values())
                       for slave, v in views.items()):
                    return nodes
            if time.monotonic() > deadline:
                self.fail(f"the mesh did not converge to {sorted(expected)}: {nodes} {views}")
            time.sleep(0.2)

    def test_bots_find_each_other_through_the_master_and_follow_a_rolling_restart(self):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
        from support import Fleet  # noqa: E402
        with Fleet(shards=6, slaves=3, rate=50, bot_args=("--mesh",)) as fleet:
            master = fleet.master
            master.wait_running()
            first = self.wait_for_mesh(master, {"s0-g1", "s1-g1", "s2-g1"})
            self.assertTrue(all(a.startswith("127.0.0.1:") for a in first.values()), first)

            out = master.cli("restart", "--wait")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            master.wait_running()
            # The retired bots left the mesh; the new ones found each other.
            self.wait_for_mesh(master, {"s0-g2", "s1-g2", "s2-g2"})
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
        self.assertEqual((report["lost"], report["duplicated"]), (0, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
