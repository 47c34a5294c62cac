"""Shared by the integration tests: finds the demo's fleet harness and checks the invariants."""
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
