"""Shared by the integration tests: finds the demo's fleet harness and checks the invariants."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("MESHMASTER_SOURCE_DIR",
                                               os.path.join(os.path.dirname(__file__), "..", "..")),
                                "examples", "demo"))
from fleet import Fleet, Gateway, Master, free_port  # noqa: E402,F401


def assert_single_owners(test, status):
    """Every shard runs, on exactly one live slave, and the slaves' counts agree with the table."""
    test.assertEqual(status["shards_running"], status["shard_count"], "not every shard is running")
    owners = {}
    for shard in status["shards"]:
        test.assertEqual(shard["phase"], "running")
        test.assertNotEqual(shard["owner"], "")
        owners[shard["owner"]] = owners.get(shard["owner"], 0) + 1
    for slave in status["slaves"]:
        test.assertEqual(owners.get(slave["id"], 0), slave["shards"])


def assert_exactly_once(test, report):
    """The gateway's audit: no event lost or processed twice, every state intact across its
    handoffs, and no owner processing after a newer one took over."""
    test.assertEqual((report["lost"], report["duplicated"], report["checksum_mismatches"], report["overlaps"]),
                     (0, 0, 0, 0), {k: report[k] for k in ("lost", "duplicated", "checksum_mismatches", "overlaps")})


def set_command(master, argv):
    """Rewrites the slave command in the master's configuration file; returns the old text."""
    with open(master.config) as f:
        config = f.read()
    start = config.index("command = [")
    with open(master.config, "w") as f:
        f.write(config[:start] + f"command = {json.dumps(argv)}" + config[config.index("\n", start):])
    return config


def assert_stopped_cleanly(test, master, moves):
    """A graceful stop that exits 0, after `moves` completed moves, with every slave exiting on its
    own (none killed) and none reporting an error."""
    test.assertEqual(master.stop(), 0)
    names = [e["event"] for e in master.events()]
    test.assertEqual(names.count("migration_completed"), moves)
    test.assertEqual(names.count("slave_killed"), 0, "slaves exited on their own after shutdown")
    test.assertEqual(names.count("slave_reported_error"), 0)


def write_private(path, text, mode=0o600):
    """A file only its owner may read (a token or secret file as the daemon wants it), or `mode`."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    os.chmod(path, mode)


def http_settings(directory, read_token, admin_token, **limits):
    """An [http] table for a Fleet: the two token files written (0600) in `directory`, a free port
    on loopback, and any limits given. Returns (settings, port)."""
    read_file, admin_file = os.path.join(directory, "read.token"), os.path.join(directory, "admin.token")
    write_private(read_file, read_token + "\n")
    write_private(admin_file, admin_token + "\n")
    port = free_port()
    return {"listen": f"127.0.0.1:{port}", "read_token_file": read_file, "admin_token_file": admin_file, **limits}, port
