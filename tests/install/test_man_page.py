#!/usr/bin/python3
"""meshmaster(1) against the program: every subcommand and every long option that `meshmaster
--help` and `meshmaster <command> --help` print today is in the man page (so the page cannot drift
from the CLI), the page formats without a warning from groff/man, and the build's gzipped copy,
the one installed, is the page in the tree."""
import gzip
import os
import re
import subprocess
import unittest

BUILD_DIR = os.path.abspath(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"))
SOURCE_DIR = os.path.abspath(os.environ.get("MESHMASTER_SOURCE_DIR", "."))
BINARY = os.path.join(BUILD_DIR, "master", "meshmaster")
PAGE = os.path.join(SOURCE_DIR, "deploy", "man", "meshmaster.1")


def help_of(path):
    out = subprocess.run([BINARY, *path, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, (path, out.returncode, out.stderr)
    return out.stdout


def section(text, title):
    """The lines under `title:` in CLI11's help, up to the next blank line."""
    match = re.search(rf"^{title}:\n((?:.+\n?)*)", text, re.MULTILINE)
    return match.group(1) if match else ""


def subcommands(text):
    return re.findall(r"^  ([a-z][a-z-]*)\s", section(text, "Subcommands"), re.MULTILINE)


def long_options(text):
    return set(re.findall(r"^  (?:-\w,)?--([a-z][a-z-]*)", section(text, "Options"), re.MULTILINE))


def command_tree():
    """[(path, help text)] for the program and every subcommand, depth first."""
    found = []

    def walk(path):
        text = help_of(path)
        found.append((path, text))
        for name in subcommands(text):
            walk(path + [name])

    walk([])
    return found


def plain(troff):
    """The page's source with troff's escapes for '-' and fonts taken out."""
    return re.sub(r"\\f[BIRP]", "", troff.replace("\\-", "-"))


class ManPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PAGE) as f:
            cls.source = f.read()
        cls.text = plain(cls.source)
        cls.tree = command_tree()

    def test_the_cli_has_the_commands_this_test_expects(self):
        # Guards the parsing above: if CLI11's help layout changed, the checks below would pass on
        # nothing.
        paths = [" ".join(p) for p, _ in self.tree]
        for expected in ("run", "check-config", "status", "stop", "mesh", "mesh ping"):
            self.assertIn(expected, paths)
        self.assertIn("leave-slaves", long_options(dict((" ".join(p), t) for p, t in self.tree)["stop"]))

    def test_every_subcommand_has_a_section(self):
        headings = re.findall(r'^\.SS "([^"]+)"', self.text, re.MULTILINE)
        missing = []
        for path, text in self.tree:
            if not path or subcommands(text):
                continue  # the program itself and `mesh`: groups, their leaves have the sections
            name = " ".join(path)
            if not any(h == name or h.startswith(name + " ") for h in headings):
                missing.append(name)
        self.assertEqual(missing, [], f"subcommands without a .SS section in {PAGE}")

    def test_every_long_option_is_described(self):
        missing = set()
        for path, text in self.tree:
            for option in long_options(text):
                if not re.search(rf"--{re.escape(option)}(?![a-z-])", self.text):
                    missing.add(f"{' '.join(path) or 'meshmaster'}: --{option}")
        self.assertEqual(sorted(missing), [], f"options `--help` lists that {PAGE} does not")

    def test_the_page_formats_without_warnings(self):
        groff = subprocess.run(["groff", "-man", "-ww", "-z", PAGE], capture_output=True, text=True, timeout=60)
        self.assertEqual((groff.returncode, groff.stderr), (0, ""))
        env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
        man = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", PAGE], capture_output=True, text=True,
                             timeout=60, env=env)
        self.assertEqual((man.returncode, man.stderr), (0, ""))
        self.assertIn("meshmaster - zero-downtime supervisor", man.stdout)

    def test_the_installed_copy_is_this_page(self):
        with gzip.open(os.path.join(BUILD_DIR, "meshmaster.1.gz"), "rt") as f:
            self.assertEqual(f.read(), self.source)


if __name__ == "__main__":
    unittest.main(verbosity=2)
