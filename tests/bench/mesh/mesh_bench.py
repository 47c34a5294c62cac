#!/usr/bin/python3
"""The mesh against its baselines, side by side in one run: the raw-UDP floor (epoll), ZeroMQ,
ENet, mesh-link (Node) and the mesh itself, interleaved round by round with fixed process
placement, medians of the rounds. Prints 64-byte request/response p50/p99/p99.9, 64-byte reliable
one-way msgs/s and 64 KiB reliable bytes/s, the mesh's ratios to each peer, then the goals (met,
NOT met, or missed with the reason). As root, it also runs the mesh between two network
namespaces, without loss and with 10% loss (nftables), and checks exactly-once delivery.

Exit status: 0 whether or not the goals are met (a benchmark, not a test); 1 if a peer crashed,
a reliable peer lost, duplicated or corrupted a message, or a baseline program is missing.
README.md beside this file explains the figures.

Usage: mesh_bench.py [--quick] [--rounds N] [--rr-count N] [--oneway-count N] [--bulk-count N] ...
Environment: MESHMASTER_BUILD_DIR (default: build/release in this repository).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import netns  # noqa: E402  (the namespaces/veth/nftables helper of the integration tests)

SIZE_SMALL, SIZE_BULK = 64, 65536
LOSS_PERCENT = 10
FAILED = []  # why the run must exit non-zero
LIVENESS = 60  # seconds: a limit on waiting for starts and stops, never a speed goal


class PeerError(Exception):
    """A peer did not run as the contract says (crash, bad output, timeout). str() is one line for
    the table; `detail` holds the peer's last words, printed once where the failure is reported."""

    def __init__(self, summary, detail=""):
        super().__init__(summary)
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Peers

class Peer:
    """One implementation under test. `tcp_ports`/`udp_ports` are the offsets from --port its server
    listens on, which the harness waits for before starting a client."""

    def __init__(self, key, label, argv, tests, reliable=True, udp_ports=(0,), tcp_ports=(), env=None,
                 server_extra=(), client_extra=(), fatal=True):
        self.key, self.label, self.argv, self.tests = key, label, argv, tests
        self.reliable, self.udp_ports, self.tcp_ports = reliable, udp_ports, tcp_ports
        self.env, self.server_extra, self.client_extra = env, list(server_extra), list(client_extra)
        self.fatal = fatal  # a failure of this peer fails the run (mesh-link's only makes it "missed")
        self.missing = None  # why it does not take part, if it does not


def cpu_plan():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return str(cpus[0]), str(cpus[1])
    return str(cpus[0]), str(cpus[0])


SERVER_CPU, CLIENT_CPU = cpu_plan()


def command(peer, args, cpu, namespace=None):
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return prefix + ["taskset", "-c", cpu] + peer.argv + args


def listening_ports(pid):
    """Ports with a bound UDP socket or a listening TCP socket in the network namespace of `pid`."""
    udp, tcp = set(), set()
    for name, ports, listen_only in (("udp", udp, False), ("udp6", udp, False), ("tcp", tcp, True),
                                     ("tcp6", tcp, True)):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if not listen_only or fields[3] == "0A":  # 0A: TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return udp, tcp


class Server:
    def __init__(self, peer, port, bind="127.0.0.1", namespace=None):
        self.peer, self.port = peer, port
        self.log = tempfile.TemporaryFile(mode="w+")
        argv = command(peer, ["server", "--port", str(port), "--bind", bind] + peer.server_extra, SERVER_CPU,
                       namespace)
        # Its own process group, so a kill also reaches whatever a wrapper script started.
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=peer.env, start_new_session=True)
        LIVE.add(self.process)
        want_udp = {port + p for p in peer.udp_ports}
        want_tcp = {port + p for p in peer.tcp_ports}
        deadline = time.monotonic() + LIVENESS
        while True:
            if self.process.poll() is not None:
                raise PeerError(f"server exited with status {self.process.returncode} at start", self.tail())
            udp, tcp = listening_ports(self.process.pid)
            if want_udp <= udp and want_tcp <= tcp:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise PeerError(f"server did not listen within {LIVENESS} s")
            time.sleep(0.02)

    def cpus(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
        return "?"

    def tail(self):
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()[-8:]
        return ("\n      " + "\n      ".join(lines)) if lines else ""

    def kill(self):
        kill_group(self.process)
        LIVE.discard(self.process)

    def stop(self):
        """SIGTERM, then it must exit 0 (the contract), within a liveness limit."""
        if self.process.poll() is not None:
            LIVE.discard(self.process)
            raise PeerError(f"server died during the run (status {self.process.returncode})", self.tail())
        self.process.send_signal(signal.SIGTERM)
        try:
            rc = self.process.wait(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PeerError(f"server did not stop within {LIVENESS} s of SIGTERM")
        LIVE.discard(self.process)
        kill_group(self.process)  # anything it left behind
        if rc != 0:
            raise PeerError(f"server exited with status {rc} on SIGTERM", self.tail())


BUSY_POLL_US = 50

LIVE = set()  # server processes to end if the harness itself stops early


def kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group's id is the server's pid
    except ProcessLookupError:
        pass
    process.wait()


def run_client(peer, test, count, size, port, timeout, host="127.0.0.1", bind=None, namespace=None):
    """`bind`: the client's own address, for a peer (the mesh) whose client is a node that must
    advertise an address the server can reach; on loopback the peer's default serves."""
    args = ["client", "--host", host, "--port", str(port), "--test", test, "--count", str(count),
            "--size", str(size)] + (["--bind", bind] if bind else []) + peer.client_extra
    try:
        done = subprocess.run(command(peer, args, CLIENT_CPU, namespace), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=peer.env)
    except subprocess.TimeoutExpired:
        raise PeerError(f"{test} client did not finish within {timeout} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        err = done.stderr.strip().splitlines()[-6:]
        raise PeerError(f"{test} client exited with status {done.returncode}",
                        "".join(f"\n      {line}" for line in err))
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise PeerError(f"{test} client printed no valid JSON: {lines[-1][:200]}")
    keys = ("p50_us", "p99_us", "p999_us") if test == "rr" else ("seconds", "received")
    if any(k not in result for k in keys):
        raise PeerError(f"{test} client's JSON lacks {', '.join(k for k in keys if k not in result)}")
    return result


def delivery_problem(result):
    """What went wrong with a reliable run, or None: everything confirmed exactly once, intact."""
    count = result["count"]
    received, dup, corrupt = result.get("received", 0), result.get("duplicates", 0), result.get("corrupt", 0)
    problems = []
    if received != count:
        problems.append(f"{count - received} of {count} lost")
    if dup:
        problems.append(f"{dup} duplicated")
    if corrupt:
        problems.append(f"{corrupt} corrupt")
    return ", ".join(problems) or None


def free_port(span):
    """A port P on 127.0.0.1 with P .. P+span-1 free for both UDP and TCP."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + span > 65535:
            continue
        held = []
        try:
            for p in range(base, base + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port range on 127.0.0.1")


# ---------------------------------------------------------------------------------------------
# mesh-link: the npm package and the Redis it discovers through

def install_meshlink(build, quick):
    """Returns (NODE_PATH, None) or (None, reason)."""
    target = os.path.join(build, "meshlink")
    modules = os.path.join(target, "node_modules")
    installed = os.path.isfile(os.path.join(modules, "mesh-link", "package.json"))
    if shutil.which("node") is None:
        return None, "node not found (apt-get install nodejs)"
    if installed:
        return modules, None
    if quick:
        return None, "skipped: not installed, and --quick does not install it (a full run does)"
    if shutil.which("npm") is None:
        return None, "npm not found, cannot install mesh-link"
    os.makedirs(target, exist_ok=True)
    shutil.copy(os.path.join(HERE, "package.json"), os.path.join(target, "package.json"))
    print(f"installing mesh-link with npm into {target} ...", flush=True)
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev"], cwd=target,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "npm install timed out after 300 s (registry unreachable?)"
    if done.returncode != 0 or not os.path.isfile(os.path.join(modules, "mesh-link", "package.json")):
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"npm install failed: {last}"
    return modules, None


class Redis:
    def __init__(self):
        if shutil.which("redis-server") is None:
            raise PeerError("redis-server not found")
        self.port = free_port(1)
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + LIVENESS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PeerError("redis-server did not start")
            time.sleep(0.05)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------
# The interleaved rounds

def run_peer_round(peer, counts, timeout):
    """One server, then each of the peer's tests once. Returns {test: result}."""
    results = {}
    server = Server(peer, free_port(3))
    try:
        cpus = server.cpus()
        for test in peer.tests:
            size = SIZE_BULK if test == "bulk" else SIZE_SMALL
            results[test] = run_client(peer, test, counts[test], size, server.port, timeout)
    except BaseException:
        server.kill()
        raise
    server.stop()
    return results, cpus


def median_of(rounds, test, key):
    values = [r[test][key] for r in rounds if test in r and key in r[test]]
    return statistics.median(values) if values else None


def fmt_rate(v):
    if v is None:
        return "-"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def fmt_bytes(v):
    if v is None:
        return "-"
    return f"{v / 1e9:.2f} GB/s" if v >= 1e9 else f"{v / 1e6:.1f} MB/s"


def fmt_us(v):
    return "-" if v is None else (f"{v:.1f}" if v < 1000 else f"{v:,.0f}")


# ---------------------------------------------------------------------------------------------
# Loss: the mesh between two namespaces, with and without 10% loss

def run_loss(peer, counts, rounds, timeout):
    """Returns ({"lossless": {...}, "lossy": {...}} medians, [delivery problems])."""
    net = netns.Network(["server", "client"])
    problems = []
    figures = {"lossless": [], "lossy": []}
    try:
        # The helper gives its bridge an address in the root namespace (for slaves that talk to a
        # master there); here the two namespaces only talk to each other, so the private addresses
        # exist only inside namespaces this run created.
        subprocess.run(["ip", "addr", "flush", "dev", net.bridge], check=True, capture_output=True)
        server_ns, client_ns = net.namespace("server"), net.namespace("client")
        server_addr, client_addr = f"{net.subnet}.10", f"{net.subnet}.11"  # netns.Network counts from .10
        print(f"loss: {peer.label} server in netns {server_ns} ({server_addr}), client in {client_ns}; "
              f"{LOSS_PERCENT}% loss = nftables in {server_ns} dropping {LOSS_PERCENT}% of packets in each "
              "direction at random", flush=True)
        for r in range(rounds):
            for label, percent in (("lossless", 0), ("lossy", LOSS_PERCENT)):
                if percent:
                    net.drop("server", percent)
                else:
                    net.heal("server")
                server = Server(peer, 7400, bind=server_addr, namespace=server_ns)
                try:
                    got = {}
                    for test, size in (("oneway", SIZE_SMALL), ("bulk", SIZE_BULK)):
                        got[test] = run_client(peer, test, counts[test], size, 7400, timeout, host=server_addr,
                                               bind=client_addr, namespace=client_ns)
                        problem = delivery_problem(got[test])
                        if problem:
                            problems.append(f"{label} {test}: {problem}")
                except BaseException:
                    server.kill()
                    raise
                server.stop()
                figures[label].append(got)
                print(f"  loss round {r + 1}/{rounds} {label:8}  64 B {fmt_rate(got['oneway']['msgs_per_s'])} msgs/s  "
                      f"64 KiB {fmt_bytes(got['bulk']['bytes_per_s'])}", flush=True)
    finally:
        net.close()
    medians = {label: {"oneway": median_of(rs, "oneway", "msgs_per_s"), "bulk": median_of(rs, "bulk", "bytes_per_s")}
               for label, rs in figures.items()}
    return medians, problems


# ---------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (what ctest runs)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 2)")
    parser.add_argument("--rr-count", type=int, help="round trips per request/response run (default 20000)")
    parser.add_argument("--oneway-count", type=int, help="64 B messages per one-way run (default 1000000)")
    parser.add_argument("--bulk-count", type=int, help="64 KiB messages per bulk run (default 5000)")
    parser.add_argument("--meshlink-rr-count", type=int, help="mesh-link is slower: its own counts (default 2000)")
    parser.add_argument("--meshlink-oneway-count", type=int, help="(default 20000)")
    parser.add_argument("--meshlink-bulk-count", type=int, help="(default 200)")
    parser.add_argument("--floor-oneway-count", type=int,
                        help="datagrams per raw blast, a reference only (default 200000)")
    parser.add_argument("--loss-oneway-count", type=int, help="64 B messages per loss run (default 200000)")
    parser.add_argument("--loss-bulk-count", type=int, help="64 KiB messages per loss run (default 1000)")
    parser.add_argument("--loss-peer", default="mesh", choices=["mesh", "enet", "zmq"],
                        help="whose loss behaviour to measure (default: the mesh; the others for comparison)")
    parser.add_argument("--peers", default="floor,zmq,enet,mesh,meshspin,meshlink",
                        help="comma-separated subset of floor,zmq,enet,mesh,meshspin,meshlink")
    parser.add_argument("--no-loss", action="store_true", help="skip the network-namespace loss runs")
    args = parser.parse_args()
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    pick = lambda given, full, small: given if given is not None else (small if quick else full)  # noqa: E731
    counts = {"rr": pick(args.rr_count, 20000, 2000), "oneway": pick(args.oneway_count, 1_000_000, 50_000),
              "bulk": pick(args.bulk_count, 5000, 200)}
    ml_counts = {"rr": pick(args.meshlink_rr_count, 2000, 300),
                 "oneway": pick(args.meshlink_oneway_count, 20000, 2000),
                 "bulk": pick(args.meshlink_bulk_count, 200, 20)}
    floor_counts = dict(counts, oneway=pick(args.floor_oneway_count, 200_000, 50_000))
    loss_counts = {"oneway": pick(args.loss_oneway_count, 200_000, 20_000),
                   "bulk": pick(args.loss_bulk_count, 1000, 50)}
    timeout = 120 if quick else 300

    build = os.environ.get("MESHMASTER_BUILD_DIR", os.path.normpath(os.path.join(HERE, "..", "..", "..", "build",
                                                                                "release")))
    bins = os.path.join(build, "tests", "bench", "mesh")
    peers = {
        "floor": Peer("floor", "raw UDP floor (epoll)", [os.path.join(bins, "udp_floor")], ["rr", "oneway"],
                      reliable=False),
        "zmq": Peer("zmq", "ZeroMQ (REQ/REP, PUSH/PULL)", [os.path.join(bins, "zmq_peer")], ["rr", "oneway", "bulk"],
                    udp_ports=(), tcp_ports=(0, 1)),
        "enet": Peer("enet", "ENet (reliable)", [os.path.join(bins, "enet_peer")], ["rr", "oneway", "bulk"]),
        # --check sampled: the message format and checks of the other C++ peers (bench_common.hpp).
        "mesh": Peer("mesh", "mesh", [os.path.join(bins, "mesh_peer")], ["rr", "oneway", "bulk"],
                     server_extra=["--check", "sampled"], client_extra=["--check", "sampled"]),
        # The same mesh with node_options::busy_poll: both ends read their socket for 50 us after
        # the last datagram instead of sleeping, so a round trip needs no wake-ups (at the cost of
        # spinning while traffic flows). Request/response only: that is what it changes.
        "meshspin": Peer("meshspin", f"mesh, busy_poll {BUSY_POLL_US} us", [os.path.join(bins, "mesh_peer")], ["rr"],
                         server_extra=["--check", "sampled", "--busy-poll", str(BUSY_POLL_US)],
                         client_extra=["--check", "sampled", "--busy-poll", str(BUSY_POLL_US)]),
        "meshlink": Peer("meshlink", "mesh-link (Node)", ["node", os.path.join(HERE, "meshlink_peer.js")],
                         ["rr", "oneway", "bulk"], fatal=False),
    }
    wanted = [k.strip() for k in args.peers.split(",") if k.strip()]
    for k in wanted:
        if k not in peers:
            parser.error(f"unknown peer {k}")
    for key, peer in peers.items():
        if key not in wanted:
            peer.missing = "not selected (--peers)"
        elif key != "meshlink" and not os.access(peer.argv[0], os.X_OK):
            peer.missing = "not built yet" if key in ("mesh", "meshspin") else f"{peer.argv[0]} not built"
            if key not in ("mesh", "meshspin"):
                FAILED.append(f"{peer.label}: {peer.missing} (build udp_floor zmq_peer enet_peer first)")

    redis = None
    try:
        if peers["meshlink"].missing is None:
            node_path, reason = install_meshlink(build, quick)
            if reason:
                peers["meshlink"].missing = reason
            else:
                try:
                    redis = Redis()
                except PeerError as e:
                    peers["meshlink"].missing = str(e)
                else:
                    peers["meshlink"].env = dict(os.environ, NODE_PATH=node_path)
                    peers["meshlink"].server_extra = ["--redis-port", str(redis.port)]
                    peers["meshlink"].client_extra = ["--redis-port", str(redis.port)]

        active = [p for p in peers.values() if p.missing is None]
        print(f"mesh benchmark: {rounds} rounds, interleaved (each round runs every peer once, the order "
              f"rotating), medians of rounds; build {build}")
        print(f"  counts: request/response {counts['rr']:,} x 64 B, one-way {counts['oneway']:,} x 64 B, "
              f"bulk {counts['bulk']:,} x 64 KiB; mesh-link {ml_counts['rr']:,} / {ml_counts['oneway']:,} / "
              f"{ml_counts['bulk']:,}; raw blast {floor_counts['oneway']:,} datagrams")
        print(f"placement: every server on CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), every client on CPU "
              f"{CLIENT_CPU} (taskset -c {CLIENT_CPU})" + (f", mesh-link's redis-server on CPU {SERVER_CPU}"
                                                            if redis else "")
              + ("" if SERVER_CPU != CLIENT_CPU else "  (one CPU only: client and server share it)"))
        for p in peers.values():
            if p.missing:
                print(f"{p.key}: {p.missing}" if p.key == "mesh" else f"{p.label}: {p.missing}")
        sys.stdout.flush()

        results = {p.key: [] for p in active}
        for r in range(rounds):
            order = active[r % len(active):] + active[:r % len(active)] if active else []
            for peer in order:
                if peer.missing:
                    continue
                peer_counts = {"meshlink": ml_counts, "floor": floor_counts}.get(peer.key, counts)
                try:
                    got, cpus = run_peer_round(peer, peer_counts, timeout)
                except PeerError as e:
                    peer.missing = f"failed in round {r + 1}: {e}"
                    print(f"  round {r + 1}/{rounds} {peer.label}: FAILED: {e}{e.detail}", flush=True)
                    if peer.fatal:
                        FAILED.append(f"{peer.label}: {e}")
                    continue
                results[peer.key].append(got)
                if r == 0:
                    print(f"  {peer.label}: server on CPUs {cpus} (from /proc), client on CPU {CLIENT_CPU}")
                line = f"  round {r + 1}/{rounds} {peer.label:28}"
                if "rr" in got:
                    line += f" rr p50 {fmt_us(got['rr']['p50_us'])} us"
                if "oneway" in got:
                    line += f"  one-way {fmt_rate(got['oneway'].get('msgs_per_s'))}/s"
                if "bulk" in got:
                    line += f"  64 KiB {fmt_bytes(got['bulk'].get('bytes_per_s'))}"
                for test in ("oneway", "bulk"):
                    problem = test in got and delivery_problem(got[test])
                    if problem:
                        line += f"  [{test}: {problem}]"
                        if not peer.reliable:
                            continue  # the raw blast has no retransmission: its loss is the point
                        if peer.fatal:
                            FAILED.append(f"{peer.label} {test}, round {r + 1}: {problem}")
                print(line, flush=True)

        # Loss runs: the mesh (or --loss-peer) between two namespaces.
        loss, loss_missing, loss_problems = None, None, []
        loss_peer = peers[args.loss_peer]
        if args.no_loss:
            loss_missing = "skipped (--no-loss)"
        elif os.geteuid() != 0:
            loss_missing = "skipped: needs root for network namespaces"
        elif not os.access(loss_peer.argv[0], os.X_OK):
            loss_missing = f"{loss_peer.key}: not built yet" if loss_peer.key == "mesh" else f"{loss_peer.label} not built"
        elif not netns.available():
            loss_missing = "skipped: network namespaces or nftables unavailable here"
        else:
            try:
                loss, loss_problems = run_loss(loss_peer, loss_counts, 1 if quick else 3, timeout)
            except PeerError as e:
                print(f"loss runs FAILED: {e}{e.detail}")
                loss_missing = f"failed: {e}"
                FAILED.append(f"loss runs ({loss_peer.label}): {e}")
            except subprocess.CalledProcessError as e:  # the namespaces, not the peer
                loss_missing = f"could not set up the namespaces: {' '.join(e.cmd)}: {(e.stderr or '').strip()}"
            for problem in loss_problems:
                FAILED.append(f"loss runs ({loss_peer.label}): {problem}")
        if loss_missing:
            print(f"loss: {loss_missing}")

        report(peers, results, loss, loss_missing, loss_problems, loss_peer)
    finally:
        for process in list(LIVE):
            kill_group(process)
        if redis:
            redis.stop()

    if FAILED:
        print("FAILED: " + "; ".join(FAILED))
        return 1
    return 0


def report(peers, results, loss, loss_missing, loss_problems, loss_peer):
    fig = {}
    for key, rounds in results.items():
        fig[key] = {"p50": median_of(rounds, "rr", "p50_us"), "p99": median_of(rounds, "rr", "p99_us"),
                    "p999": median_of(rounds, "rr", "p999_us"),
                    "oneway": median_of(rounds, "oneway", "msgs_per_s"),
                    "bulk": median_of(rounds, "bulk", "bytes_per_s")}
        if not rounds:
            fig[key] = {k: None for k in fig[key]}

    print()
    print(f"{'':30} {'64 B request/response (us)':>28}   {'64 B reliable':>14}   {'64 KiB reliable':>15}")
    print(f"{'peer':30} {'p50':>9} {'p99':>9} {'p99.9':>9}   {'one-way msg/s':>14}   {'bytes/s':>15}")
    for key, peer in peers.items():
        if key not in fig or not results[key]:
            print(f"{peer.label:30} missed: {peer.missing or 'no result'}")
            continue
        f = fig[key]
        oneway = fmt_rate(f["oneway"]) + ("*" if key == "floor" else "")
        print(f"{peer.label:30} {fmt_us(f['p50']):>9} {fmt_us(f['p99']):>9} {fmt_us(f['p999']):>9}   "
              f"{oneway:>14}   {fmt_bytes(f['bulk']):>15}"
              + (f"   (medians of {len(results[key])} rounds: {peer.missing})" if peer.missing else ""))
    if results.get("floor"):
        kept = [r["oneway"]["received"] / r["oneway"]["count"] for r in results["floor"] if "oneway" in r]
        print(f"  * the raw blast is unreliable: {statistics.median(kept):.1%} of its datagrams arrived "
              "(reference only; 64 KiB does not fit a datagram)")

    mesh = fig.get("mesh") if results.get("mesh") else None
    if mesh:
        print("\nthe mesh relative to each peer (latency: mesh / peer, lower is better; throughput: mesh / peer, "
              "higher is better)")
        ratio = lambda a, b: f"x{a / b:.2f}" if a is not None and b else "-"  # noqa: E731
        for key, peer in peers.items():
            if key in ("mesh", "meshspin") or key not in fig or not results[key]:
                continue
            f = fig[key]
            print(f"  vs {peer.label:28} p50 {ratio(mesh['p50'], f['p50']):>7}  p99 {ratio(mesh['p99'], f['p99']):>7}"
                  f"  p99.9 {ratio(mesh['p999'], f['p999']):>7}  one-way {ratio(mesh['oneway'], f['oneway']):>7}"
                  f"  64 KiB {ratio(mesh['bulk'], f['bulk']):>7}")

    def missing(key):
        if key in fig and results.get(key):
            return None
        label = "mesh" if key == "mesh" else peers[key].label
        return f"{label}: {peers[key].missing or 'no result'}"

    def goal(name, need, check):
        absent = [m for m in (missing(k) for k in need) if m]
        if absent:
            return name, "missed", "; ".join(absent)
        ok, detail = check()
        return name, "met" if ok else "NOT met", detail

    def relative(metric, other, factor, lower_is_better, fmt, who="mesh"):
        def check():
            m, o = fig[who][metric], fig[other][metric]
            if m is None or o is None:
                return False, "no figure"
            ok = m <= factor * o if lower_is_better else m >= factor * o
            return ok, f"{peers[who].label} {fmt(m)} vs {fmt(o)}: x{m / o:.2f}"
        return check

    us = lambda v: f"{v:.1f} us"  # noqa: E731
    goals = [
        goal("request/response p50 <= 1.3 x raw-UDP floor", ["mesh", "floor"], relative("p50", "floor", 1.3, True, us)),
        goal("request/response p50 <= 0.4 x ZeroMQ REQ/REP", ["mesh", "zmq"], relative("p50", "zmq", 0.4, True, us)),
        goal(f"  the same with busy_poll {BUSY_POLL_US} us", ["meshspin", "zmq"],
             relative("p50", "zmq", 0.4, True, us, who="meshspin")),
        goal(f"  and <= 1.3 x the floor with busy_poll {BUSY_POLL_US} us", ["meshspin", "floor"],
             relative("p50", "floor", 1.3, True, us, who="meshspin")),
        goal("64 B reliable one-way >= 2 x ENet", ["mesh", "enet"],
             relative("oneway", "enet", 2, False, lambda v: fmt_rate(v) + "/s")),
        goal("64 B reliable one-way >= 1.1 x ZeroMQ PUSH/PULL", ["mesh", "zmq"],
             relative("oneway", "zmq", 1.1, False, lambda v: fmt_rate(v) + "/s")),
        goal("64 KiB reliable >= 1.4 x ZeroMQ (loopback)", ["mesh", "zmq"], relative("bulk", "zmq", 1.4, False, fmt_bytes)),
        goal("reliable one-way >= 100 x mesh-link", ["mesh", "meshlink"],
             relative("oneway", "meshlink", 100, False, lambda v: fmt_rate(v) + "/s")),
        goal("request/response p99 <= 0.1 x mesh-link", ["mesh", "meshlink"], relative("p99", "meshlink", 0.1, True, us)),
    ]
    who = "mesh" if loss_peer.key == "mesh" else loss_peer.label
    if loss is None:
        reason = loss_missing or "no result"
        goals.append((f"{LOSS_PERCENT}% loss: every message delivered exactly once ({who})", "missed", reason))
        goals.append((f"{LOSS_PERCENT}% loss: goodput >= 0.75 x lossless ({who})", "missed", reason))
    else:
        goals.append((f"{LOSS_PERCENT}% loss: every message delivered exactly once ({who})",
                      "NOT met" if loss_problems else "met", "; ".join(loss_problems) or "0 lost, 0 duplicated"))
        shares = {t: (loss["lossy"][t] / loss["lossless"][t]) if loss["lossless"][t] else 0 for t in ("oneway", "bulk")}
        goals.append((f"{LOSS_PERCENT}% loss: goodput >= 0.75 x lossless ({who})",
                      "met" if min(shares.values()) >= 0.75 else "NOT met",
                      f"64 B {fmt_rate(loss['lossy']['oneway'])}/s of {fmt_rate(loss['lossless']['oneway'])}/s "
                      f"(x{shares['oneway']:.2f}); 64 KiB {fmt_bytes(loss['lossy']['bulk'])} of "
                      f"{fmt_bytes(loss['lossless']['bulk'])} (x{shares['bulk']:.2f})"))
    print("\ngoals")
    for name, status, detail in goals:
        print(f"  {status:8} {name:56} {detail}")


if __name__ == "__main__":
    # ctest or a user stopping the run still tears down namespaces and servers (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
