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
        time.sleep(0.2)

    def close(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
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
            time.sleep(0.5)
            started = time.monotonic()
            self.assertEqual(server.close(signal.SIGTERM), 0)
            out, err = c.communicate(timeout=30)
        finally:
            if c.poll() is None:
                c.kill()
                c.wait()
        r = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(c.returncode, 0, err)
        self.assertEqual(r["outcomes"], 2000000, "each request ended in exactly one outcome")
        self.assertGreater(r["stopped"], 0, "requests after the goodbye are refused with stopped")
        self.assertEqual(r["timeouts"], 0, "nothing was left to time out")
        self.assertLess(time.monotonic() - started, 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
