#!/usr/bin/python3
"""`cpack -G DEB` in the release tree (cmake/MeshmasterPackage.cmake) as a Debian administrator sees
its result: meshmaster_<version>_<arch>.deb whose Depends names the package of every shared library
the binaries need (found by dpkg-shlibdeps), holding the daemon, the unit where systemd looks for
a package's units, the man page, the configuration as a conffile and a system user made by
systemd-sysusers; nothing outside /usr, /etc and /lib, no RUNPATH, stripped binaries; and lintian
finds no error in it (its warnings are printed to the test log)."""
import gzip
import os
import re
import subprocess
import tempfile
import unittest

BUILD_DIR = os.path.abspath(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"))
SOURCE_DIR = os.path.abspath(os.environ.get("MESHMASTER_SOURCE_DIR", "."))
VERSION = os.environ.get("MESHMASTER_VERSION", "0.1.0")
UNIT = os.path.join(SOURCE_DIR, "deploy", "systemd", "meshmaster.service")


def run(argv, **kwargs):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def read(path):
    with open(path) as f:
        return f.read()


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed_of(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", path]))


def package_of(library):
    """The Debian package that holds the shared library `library` on this machine (dpkg -S)."""
    for path in (f"/lib/x86_64-linux-gnu/{library}", f"/usr/lib/x86_64-linux-gnu/{library}",
                 f"/lib64/{library}", f"/usr/lib/{library}"):
        if os.path.exists(path):
            out = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=60)
            if out.returncode == 0:
                return out.stdout.split(":")[0]
    raise AssertionError(f"no installed package holds {library}")


class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="meshmaster-deb-")
        out_dir = os.path.join(cls.tmp.name, "out")
        run(["cpack", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"), "-G", "DEB", "-B", out_dir])
        arch = run(["dpkg", "--print-architecture"]).strip()
        cls.deb = os.path.join(out_dir, f"meshmaster_{VERSION}_{arch}.deb")
        assert os.path.isfile(cls.deb), os.listdir(out_dir)
        cls.root = os.path.join(cls.tmp.name, "root")
        run(["dpkg-deb", "-x", cls.deb, cls.root])
        cls.control = os.path.join(cls.tmp.name, "control")
        run(["dpkg-deb", "-e", cls.deb, cls.control])
        cls.fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", run(["dpkg-deb", "-f", cls.deb]), re.MULTILINE))
        cls.contents = [line.split()[-1] if "->" not in line else line.split(" -> ")[0].split()[-1]
                        for line in run(["dpkg-deb", "-c", cls.deb]).splitlines()]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def depends(self):
        """The package names in Depends (alternatives included), without versions."""
        return {re.sub(r"\s*\(.*\)", "", alt).strip()
                for dep in self.fields["Depends"].split(",") for alt in dep.split("|")}

    def test_control_fields(self):
        f = self.fields
        self.assertEqual(f["Package"], "meshmaster")
        self.assertEqual(f["Version"], VERSION)
        self.assertEqual(f["Architecture"], run(["dpkg", "--print-architecture"]).strip())
        self.assertRegex(f["Maintainer"], r"^[^<>]+ <[^<>@\s]+@[^<>@\s]+>$")
        self.assertEqual(f["Section"], "admin")
        self.assertEqual(f["Description"], "zero-downtime supervisor for sharded worker fleets")
        self.assertNotIn("Homepage", f)

    def test_depends_come_from_the_binaries(self):
        depends = self.depends()
        # The ones this build links today, by name, so that a lost dependency is seen here...
        for package in ("libc6", "libssl3", "libhiredis0.14", "libsystemd0", "libfmt9", "libtomlplusplus3"):
            self.assertIn(package, depends)
        # ...and every library any packaged ELF file needs, whatever it is: its package is a
        # dependency, or the library is in this package.
        ours = {os.path.basename(p) for p in self.contents if ".so." in p}
        for path in self.elf_files():
            for library in needed_of(path):
                if library in ours:
                    continue
                self.assertIn(package_of(library), depends, f"{library}, needed by {path}")
        # What postinst runs.
        self.assertIn("systemd", depends)

    def elf_files(self):
        found = []
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path) and is_elf(path):
                    found.append(path)
        self.assertIn(os.path.join(self.root, "usr", "bin", "meshmaster"), found)
        return found

    def test_contents(self):
        for path in ("./usr/bin/meshmaster", "./lib/systemd/system/meshmaster.service",
                     "./usr/share/man/man1/meshmaster.1.gz", "./etc/meshmaster/meshmaster.toml",
                     "./usr/lib/sysusers.d/meshmaster.conf", "./usr/share/doc/meshmaster/copyright",
                     "./usr/share/doc/meshmaster/changelog.gz",
                     f"./usr/lib/libmeshmaster-slave.so.{VERSION}", "./usr/include/meshmaster/slave/slave.hpp",
                     "./usr/lib/cmake/meshmaster/meshmasterConfig.cmake", "./usr/lib/pkgconfig/meshmaster-slave.pc"):
            self.assertIn(path, self.contents)
        outside = [p for p in self.contents
                   if not re.match(r"^\./(usr|etc|lib)(/|$)", p) and p != "./"]
        self.assertEqual(outside, [], "packaged outside /usr, /etc and /lib")
        self.assertEqual(read(os.path.join(self.root, "lib", "systemd", "system", "meshmaster.service")), read(UNIT))
        self.assertEqual(read(os.path.join(self.root, "etc", "meshmaster", "meshmaster.toml")),
                         read(os.path.join(SOURCE_DIR, "deploy", "meshmaster.toml.example")))
        with gzip.open(os.path.join(self.root, "usr", "share", "man", "man1", "meshmaster.1.gz"), "rt") as f:
            self.assertEqual(f.read(), read(os.path.join(SOURCE_DIR, "deploy", "man", "meshmaster.1")))

    def test_conffile_and_system_user(self):
        self.assertEqual(read(os.path.join(self.control, "conffiles")).split(), ["/etc/meshmaster/meshmaster.toml"])
        # The user systemd-sysusers makes is the one the unit runs as, with the unit's state
        # directory as its home.
        unit = read(UNIT)
        user = re.search(r"^User=(\S+)$", unit, re.MULTILINE).group(1)
        state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
        sysusers = read(os.path.join(self.root, "usr", "lib", "sysusers.d", "meshmaster.conf"))
        self.assertRegex(sysusers, rf'(?m)^u {user} - "[^"]+" /var/lib/{state}$')
        # postinst run for real, into a copy of the unpacked package with this machine's user
        # database (dpkg's DPKG_ROOT): it makes the system user with systemd-sysusers, and a secret
        # the daemon accepts, readable by that user only.
        sysroot = os.path.join(self.tmp.name, "postinst-root")
        run(["cp", "-a", self.root, sysroot])
        for name in ("passwd", "group"):
            with open(f"/etc/{name}") as f, open(os.path.join(sysroot, "etc", name), "w") as g:
                g.write("\n".join(line for line in f.read().splitlines() if not line.startswith(f"{user}:")) + "\n")
        for name in ("shadow", "gshadow"):
            open(os.path.join(sysroot, "etc", name), "w").close()
        env = dict(os.environ, DPKG_ROOT=sysroot)
        run(["sh", os.path.join(self.control, "postinst"), "configure", ""], env=env)
        entry = [line.split(":") for line in read(os.path.join(sysroot, "etc", "passwd")).splitlines()
                 if line.startswith(f"{user}:")]
        self.assertEqual(len(entry), 1, entry)
        self.assertEqual(entry[0][5:], [f"/var/lib/{state}", "/usr/sbin/nologin"])
        self.assertLess(int(entry[0][2]), 1000, "a system user")
        self.assertRegex(read(os.path.join(sysroot, "etc", "group")), rf"(?m)^{user}:x:{entry[0][3]}:")
        secret = os.path.join(sysroot, "etc", "meshmaster", "secret")
        info = os.stat(secret)
        self.assertEqual((info.st_mode & 0o777, info.st_uid, info.st_gid), (0o600, int(entry[0][2]), int(entry[0][3])))
        self.assertRegex(read(secret), r"^[0-9a-f]{64}\n$")
        first = read(secret)
        # Run again (an upgrade): the user and the secret stay as they are.
        run(["sh", os.path.join(self.control, "postinst"), "configure", VERSION], env=env)
        self.assertEqual(read(secret), first)
        self.assertEqual(sum(1 for line in read(os.path.join(sysroot, "etc", "passwd")).splitlines()
                             if line.startswith(f"{user}:")), 1)
        # The daemon takes that secret: check-config with it as secret_file (and the rest of the
        # example's paths in a temporary place) passes.
        with tempfile.TemporaryDirectory(prefix="meshmaster-deb-config-") as work:
            config = os.path.join(work, "meshmaster.toml")
            text = read(os.path.join(sysroot, "etc", "meshmaster", "meshmaster.toml"))
            text = text.replace('"/etc/meshmaster/secret"', f'"{secret}"')
            text = text.replace('"/var/lib/meshmaster/', f'"{work}/').replace('"/run/meshmaster/', f'"{work}/')
            with open(config, "w") as f:
                f.write(text)
            out = subprocess.run([os.path.join(BUILD_DIR, "master", "meshmaster"), "check-config", "-c", config],
                                 capture_output=True, text=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if k != "MESHMASTER_SECRET"})
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        run(["sh", "-n", os.path.join(self.control, "postinst")])
        run(["sh", "-n", os.path.join(self.control, "postrm")])
        self.assertIn("activate-noawait ldconfig", read(os.path.join(self.control, "triggers")))

    def test_binaries_have_no_runpath_and_are_stripped(self):
        for path in self.elf_files():
            if path.endswith(".a"):
                continue
            dynamic = run(["readelf", "-d", path])
            self.assertNotRegex(dynamic, r"\((RPATH|RUNPATH)\)", path)
            self.assertNotRegex(run(["readelf", "-S", "-W", path]), r"\.debug_|\.symtab", path)
        # The packaged daemon runs with the system's libraries (and its own, from /usr/lib only
        # once installed: it links none of them).
        out = subprocess.run([os.path.join(self.root, "usr", "bin", "meshmaster"), "--version"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(VERSION, out.stdout)

    def test_lintian_finds_no_errors(self):
        out = subprocess.run(["lintian", "--tag-display-limit", "0", self.deb], capture_output=True, text=True,
                             timeout=600)
        tags = [line for line in out.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
        print("\nlintian:\n" + "\n".join(tags) if tags else "\nlintian: no tags")
        self.assertEqual([t for t in tags if t.startswith("E: ")], [], out.stdout + out.stderr)
        # lintian exits 2 when it could not check the package at all.
        self.assertNotEqual(out.returncode, 2, out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
