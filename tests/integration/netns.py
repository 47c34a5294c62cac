"""Network namespaces the tests create for themselves: a bridge in the root namespace and, per name,
a namespace joined to it by a veth pair. Slaves run inside them (in_netns.sh); nftables rules in a
namespace drop a share of its packets, or all of them (a partition). Everything is removed again
by close(), also when a test fails. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); available() says."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(HERE, "in_netns.sh")


def _run(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def available():
    name = f"mmprobe{os.getpid()}"
    try:
        if _run("ip", "netns", "add", name, check=False).returncode != 0:
            return False
        ok = _run("ip", "netns", "exec", name, "nft", "list", "tables", check=False).returncode == 0
        return ok
    except FileNotFoundError:
        return False
    finally:
        _run("ip", "netns", "del", name, check=False)


class Network:
    def __init__(self, names):
        tag = os.getpid() % 100000
        self.prefix = f"mm{tag}"
        self.subnet = f"10.231.{tag % 250}"
        self.bridge = f"{self.prefix}br"
        self.host = f"{self.subnet}.1"
        self.namespaces = {}
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for n, name in enumerate(names):
                self.add(name, n)
        except Exception:
            self.close()
            raise

    def namespace(self, name):
        return f"{self.prefix}-{name}"

    def add(self, name, n):
        ns, veth, peer = self.namespace(name), f"{self.prefix}v{n}", f"{self.prefix}p{n}"
        _run("ip", "netns", "add", ns)
        self.namespaces[name] = ns
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "link", "set", peer, "netns", ns)
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.subnet}.{n + 10}/24", "dev", peer)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
        # A veth passes a UDP GSO run (up to 64 datagrams in one buffer) whole, where a NIC cuts it
        # before the wire: the nftables rules here would drop or pass a run at once. Segments of
        # one make the stack cut runs before the veth, so rules see datagrams as a wire carries them.
        _run("ip", "netns", "exec", ns, "ip", "link", "set", peer, "gso_max_segs", "1")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def drop(self, name, percent):
        """Drops `percent` of the packets into and out of the namespace (100: a partition)."""
        ns = self.namespaces[name]
        self.heal(name)
        rule = ["drop"] if percent >= 100 else ["numgen", "random", "mod", "100", "<", str(percent), "drop"]
        _run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "chaos")
        for hook in ("input", "output"):
            _run("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "chaos", hook,
                 f"{{ type filter hook {hook} priority 0 ; }}")
            _run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "chaos", hook, *rule)

    def heal(self, name):
        _run("ip", "netns", "exec", self.namespaces[name], "nft", "delete", "table", "inet", "chaos", check=False)

    def wrapper(self):
        """The command prefix that runs a slave in the namespace of its slot (spares: "spare")."""
        return [WRAPPER, self.prefix]

    def close(self):
        for ns in self.namespaces.values():
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces = {}
        _run("ip", "link", "del", self.bridge, check=False)
