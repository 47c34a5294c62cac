#!/usr/bin/python3
"""The fleet secret's rules as an operator meets them (docs/protocol.md, "The secret"): a secret
file that other users may read, or one that is too short, is refused by `run` and `check-config`
alike, naming the path and the reason, before anything is bound; a slave refuses the same file."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from support import Master  # noqa: E402

LIVENESS = 60  # seconds: a refusal at start takes milliseconds; this only stops a hung test


class SecretFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="meshmaster-secret-")
        self.master = Master(self.dir.name, "127.0.0.1:1", shards=4, slaves=1)
        self.secret = os.path.join(self.dir.name, "secret")

    def tearDown(self):
        self.dir.cleanup()

    def meshmaster(self, *args):
        return subprocess.run([self.master.binary, *args, "-c", self.master.config], capture_output=True, text=True,
                              timeout=LIVENESS, stdin=subprocess.DEVNULL)

    def assert_refused_by_run_and_check(self, expected):
        check = self.meshmaster("check-config")
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn(expected, check.stderr)
        run = self.meshmaster("run")
        self.assertEqual(run.returncode, 78, run.stdout + run.stderr)
        self.assertIn(expected, run.stderr)
        self.assertFalse(os.path.exists(self.master.socket), "a refused start left its control socket behind")

    def test_a_secret_file_others_can_read_is_refused_naming_path_and_mode(self):
        for mode in (0o644, 0o640, 0o604):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.secret, mode)
                self.assert_refused_by_run_and_check(
                    f"the secret file {self.secret} is accessible by other users (mode {mode:04o})")
        os.chmod(self.secret, 0o600)
        check = self.meshmaster("check-config")
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_a_short_secret_is_refused_with_its_length(self):
        with open(self.secret, "w") as f:
            f.write("too-short\n")
        self.assert_refused_by_run_and_check(
            f"the secret file {self.secret} holds 9 bytes (after trailing newlines); a secret needs at least 16")

    def test_a_missing_secret_file_is_refused_with_the_reason(self):
        os.remove(self.secret)
        self.assert_refused_by_run_and_check(f"cannot read the secret file {self.secret}: No such file or directory")

    def test_a_slave_refuses_a_secret_file_others_can_read(self):
        os.chmod(self.secret, 0o644)
        bot = os.path.join(os.path.dirname(self.master.binary), "..", "examples", "bot", "bot")
        env = dict(os.environ, MESHMASTER_ADDR="127.0.0.1:1", MESHMASTER_SECRET_FILE=self.secret)
        env.pop("MESHMASTER_SECRET", None)
        env.pop("MESHMASTER_SECRET_FD", None)
        out = subprocess.run([bot, "--gateway", "127.0.0.1:1"], capture_output=True, text=True, timeout=LIVENESS,
                             env=env, stdin=subprocess.DEVNULL)
        self.assertNotEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"the secret file {self.secret} is accessible by other users (mode 0644)", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
