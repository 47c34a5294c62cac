#!/usr/bin/python3
"""The slave library on a thread of its own (tests/integration/thread_slave.cpp): handlers run on
the library's thread, completions come from other threads, and meshmaster cold-starts, restarts
and stops such slaves like any other."""
import os
import tempfile
import unittest

from support import Master, assert_single_owners, assert_stopped_cleanly

THREAD_SLAVE = os.path.join(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"), "tests", "integration", "thread_slave")


class OwnThread(unittest.TestCase):
    def test_cold_start_restart_stop(self):
        with tempfile.TemporaryDirectory() as workdir:
            master = Master(workdir, "unused:0", shards=8, slaves=2)
            with open(master.config) as f:
                config = f.read()
            start = config.index("command = [")
            end = config.index("\n", start)
            with open(master.config, "w") as f:
                f.write(config[:start] + f'command = ["{THREAD_SLAVE}"]' + config[end:])
            try:
                master.start()
                assert_single_owners(self, master.wait_running())
                out = master.cli("restart", "--wait")
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                status = master.wait_running()
                assert_single_owners(self, status)
                self.assertTrue(all(s["id"].endswith("-g2") for s in status["slaves"]))
                assert_stopped_cleanly(self, master, moves=8)
            finally:
                master.stop()
                master.kill_leftovers()


if __name__ == "__main__":
    unittest.main(verbosity=2)
