#!/usr/bin/python3
"""deploy/meshmaster.toml.example, the configuration installed beside the unit (and as the Debian
package's /etc/meshmaster/meshmaster.toml): `meshmaster check-config` accepts it, and its paths are
the ones deploy/systemd/meshmaster.service gives the daemon (the -c path in ExecStart, and the
directories systemd creates for the unit), so a packaged install starts with it once the slave
command is filled in."""
import os
import re
import subprocess
import tempfile
import unittest

BUILD_DIR = os.path.abspath(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"))
SOURCE_DIR = os.path.abspath(os.environ.get("MESHMASTER_SOURCE_DIR", "."))
BINARY = os.path.join(BUILD_DIR, "master", "meshmaster")
EXAMPLE = os.path.join(SOURCE_DIR, "deploy", "meshmaster.toml.example")
UNIT = os.path.join(SOURCE_DIR, "deploy", "systemd", "meshmaster.service")
# What the unit's directive names, under which root systemd makes it.
UNIT_DIRECTORIES = {"RuntimeDirectory": "/run", "StateDirectory": "/var/lib", "LogsDirectory": "/var/log"}


def read(path):
    with open(path) as f:
        return f.read()


def settings(text):
    """The example's top-level `key = "path"` settings."""
    top = text.split("\n[", 1)[0]
    return dict(re.findall(r'^([a-z_]+) = "([^"]*)"', top, re.MULTILINE))


class ExampleConfig(unittest.TestCase):
    def setUp(self):
        self.example = read(EXAMPLE)
        self.unit = read(UNIT)
        self.settings = settings(self.example)

    def test_the_unit_starts_the_daemon_with_this_file(self):
        exec_start = re.search(r"^ExecStart=(.*)$", self.unit, re.MULTILINE).group(1).split()
        self.assertEqual(exec_start[:2], ["/usr/bin/meshmaster", "run"])
        self.assertEqual(exec_start[exec_start.index("-c") + 1], "/etc/meshmaster/meshmaster.toml")

    def test_paths_are_in_the_directories_systemd_makes(self):
        made = {}
        for directive, root in UNIT_DIRECTORIES.items():
            name = re.search(rf"^{directive}=(\S+)$", self.unit, re.MULTILINE).group(1)
            made[directive] = f"{root}/{name}"
        self.assertEqual(os.path.dirname(self.settings["control_socket"]), made["RuntimeDirectory"])
        self.assertEqual(os.path.dirname(self.settings["event_log"]), made["StateDirectory"])
        self.assertEqual(os.path.dirname(self.settings["secret_file"]), "/etc/meshmaster")
        # The unit's ProtectSystem=strict leaves only its own directories writable: the daemon writes
        # nothing else the example names.
        writable = set(made.values())
        for key in ("control_socket", "event_log"):
            self.assertIn(os.path.dirname(self.settings[key]), writable, key)

    def test_check_config_accepts_it(self):
        # check-config checks the machine too (the directories exist and can be written, the secret
        # file has mode 0600): give it the unit's directories under a temporary root.
        with tempfile.TemporaryDirectory(prefix="meshmaster-example-") as root:
            text = self.example
            for top in ("/etc/meshmaster", "/run/meshmaster", "/var/lib/meshmaster", "/var/log/meshmaster"):
                os.makedirs(root + top)
                text = text.replace(f'"{top}/', f'"{root}{top}/')
            self.assertNotIn('"/etc/', text)
            self.assertNotIn('"/var/', text)
            self.assertNotIn('"/run/', text)
            secret = os.path.join(root, "etc", "meshmaster", "secret")
            with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write("a-secret-of-at-least-sixteen-bytes\n")
            config = os.path.join(root, "meshmaster.toml")
            with open(config, "w") as f:
                f.write(text)
            env = {k: v for k, v in os.environ.items() if k != "MESHMASTER_SECRET"}
            out = subprocess.run([BINARY, "check-config", "-c", config], capture_output=True, text=True,
                                 timeout=60, env=env)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("configuration ok: 256 shards over 4 slaves", out.stdout)
            # And the check is real: without the secret file the same configuration is refused.
            os.unlink(secret)
            out = subprocess.run([BINARY, "check-config", "-c", config], capture_output=True, text=True,
                                 timeout=60, env=env)
            self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
            self.assertIn("secret", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
