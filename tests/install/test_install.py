#!/usr/bin/python3
"""`cmake --install` as a library user and a packager see it: the release tree installed into a
temporary prefix holds the daemon, headers, shared libraries with SONAMEs and static ones, a CMake
package and pkg-config files; two projects outside the tree build workers against it (CMake's
find_package, pkg-config with g++), and the installed daemon runs them as its slaves. Nothing is
installed outside the prefix."""
import glob
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from support import Master, assert_single_owners, assert_stopped_cleanly, set_command  # noqa: E402

BUILD_DIR = os.path.abspath(os.environ.get("MESHMASTER_BUILD_DIR", "build/release"))
SOURCE_DIR = os.path.abspath(os.environ.get("MESHMASTER_SOURCE_DIR", "."))
VERSION = os.environ.get("MESHMASTER_VERSION", "0.1.0")
HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARIES = ("protocol", "mesh", "slave")
# While the major version is 0 the SONAME carries major.minor (cmake/MeshmasterInstall.cmake).
_major, _minor, _ = VERSION.split(".")
SOVERSION = f"{_major}.{_minor}" if _major == "0" else _major


def run(argv, **kwargs):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], env=env)


def dynamic_section(path):
    return run(["readelf", "-d", path])


def soname_of(path):
    match = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dynamic_section(path))
    return match.group(1) if match else None


def needed_of(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic_section(path))


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="meshmaster-install-")
        cls.prefix = os.path.join(cls.tmp.name, "prefix")
        install(cls.prefix)
        pcs = glob.glob(os.path.join(cls.prefix, "**", "pkgconfig", "meshmaster-slave.pc"), recursive=True)
        assert len(pcs) == 1, pcs
        cls.libdir = os.path.dirname(os.path.dirname(pcs[0]))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_nothing_lands_outside_the_prefix(self):
        destdir = os.path.join(self.tmp.name, "destdir")
        install("/opt/meshmaster", destdir)
        outside = []
        for root, dirs, files in os.walk(destdir):
            for name in dirs + files:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, destdir)
                if not (relative in ("opt", "opt/meshmaster") or relative.startswith("opt/meshmaster/")):
                    outside.append(relative)
        self.assertEqual(outside, [], "installed outside the prefix")
        with open(os.path.join(BUILD_DIR, "install_manifest.txt")) as f:
            manifest = f.read().split()
        self.assertTrue(manifest)
        # What CMake records as installed (paths without DESTDIR): all of it under the prefix.
        self.assertEqual([p for p in manifest if not p.startswith("/opt/meshmaster/")], [])

    def test_layout(self):
        p = self.prefix
        self.assertTrue(os.access(os.path.join(p, "bin", "meshmaster"), os.X_OK))
        for header in ("slave/slave.hpp", "slave/options.hpp", "mesh/discovery.hpp", "mesh/node.hpp",
                       "protocol/messages.hpp"):
            self.assertTrue(os.path.isfile(os.path.join(p, "include", "meshmaster", header)), header)
        cmake_dir = os.path.join(self.libdir, "cmake", "meshmaster")
        for name in ("meshmasterConfig.cmake", "meshmasterConfigVersion.cmake", "meshmasterTargets.cmake"):
            self.assertTrue(os.path.isfile(os.path.join(cmake_dir, name)), name)
        for name in LIBRARIES:
            self.assertTrue(os.path.isfile(os.path.join(self.libdir, f"libmeshmaster-{name}.a")), name)
            self.assertTrue(os.path.isfile(os.path.join(self.libdir, "pkgconfig", f"meshmaster-{name}.pc")), name)
        # Running it as a service: the man page (gzipped, as packages ship it), the systemd unit and
        # the example configuration, all inside the prefix.
        self.assertTrue(os.path.isfile(os.path.join(p, "share", "man", "man1", "meshmaster.1.gz")))
        unit = os.path.join(p, "lib", "systemd", "system", "meshmaster.service")
        with open(unit) as f, open(os.path.join(SOURCE_DIR, "deploy", "systemd", "meshmaster.service")) as g:
            self.assertEqual(f.read(), g.read())
        self.assertTrue(os.path.isfile(os.path.join(p, "share", "meshmaster", "meshmaster.toml.example")))
        self.assertTrue(os.path.isfile(os.path.join(p, "share", "meshmaster", "grafana", "meshmaster.json")))
        self.assertTrue(os.path.isfile(os.path.join(p, "lib", "sysusers.d", "meshmaster.conf")))
        for doc in ("protocol.md", "operations.md", "events.md"):
            self.assertTrue(os.path.isfile(os.path.join(p, "share", "doc", "meshmaster", doc)), doc)
        self.assertFalse(os.path.exists(os.path.join(p, "etc")), "no live configuration outside a package")
        # No installed header pulls in msgpack-c, which stays a private dependency.
        for header in glob.glob(os.path.join(p, "include", "**", "*.hpp"), recursive=True):
            with open(header) as f:
                self.assertNotRegex(f.read(), r"#\s*include\s*<msgpack", header)

    def test_shared_libraries_have_sonames(self):
        for name in LIBRARIES:
            real = os.path.join(self.libdir, f"libmeshmaster-{name}.so.{VERSION}")
            self.assertTrue(os.path.isfile(real), real)
            soname = f"libmeshmaster-{name}.so.{SOVERSION}"
            self.assertEqual(soname_of(real), soname)
            # The loader's name and the linker's name both lead to the real file.
            for link in (soname, f"libmeshmaster-{name}.so"):
                self.assertEqual(os.path.realpath(os.path.join(self.libdir, link)), real, link)

    def test_consumers_build_and_run_as_slaves(self):
        work = os.path.join(self.tmp.name, "consumers")
        os.makedirs(work)
        # The worker: the README's embedding example, the smallest correct one.
        source = os.path.join(work, "worker.cpp")
        run(["/usr/bin/python3", os.path.join(SOURCE_DIR, "tests", "unit", "readme_example.py"),
             os.path.join(SOURCE_DIR, "README.md"), "program", "embedding", source])
        # CMake: find_package(meshmaster CONFIG REQUIRED), meshmaster::slave and ::slave_static.
        cmake_build = os.path.join(work, "cmake")
        run(["cmake", "-S", os.path.join(HERE, "consumer_cmake"), "-B", cmake_build, "-G", "Ninja",
             f"-DCMAKE_PREFIX_PATH={self.prefix}", f"-DWORKER_SOURCE={source}", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
        run(["cmake", "--build", cmake_build])
        cmake_worker = os.path.join(cmake_build, "worker")
        static_worker = os.path.join(cmake_build, "worker_static")
        self.assertIn(f"libmeshmaster-slave.so.{SOVERSION}", needed_of(cmake_worker))
        self.assertEqual([n for n in needed_of(static_worker) if n.startswith("libmeshmaster")], [],
                         "the static worker needs no meshmaster shared library")
        # pkg-config and a plain g++ command line.
        pc_worker = os.path.join(work, "worker_pkgconfig")
        run([os.path.join(HERE, "consumer_pkgconfig", "build.sh"), self.libdir, source, pc_worker])
        for worker in (cmake_worker, pc_worker):
            ldd = run(["ldd", worker])
            self.assertNotIn("not found", ldd)
            self.assertIn(os.path.join(self.libdir, "libmeshmaster-slave.so"), ldd, "loaded from the prefix")

        with tempfile.TemporaryDirectory(prefix="meshmaster-install-run-") as workdir:
            # The token is the slaves' one argument (the worker ignores it): kill_leftovers finds
            # this test's slaves by it.
            token = f"install-test-{os.getpid()}"
            master = Master(workdir, token, shards=8, slaves=2)
            master.binary = os.path.join(self.prefix, "bin", "meshmaster")
            set_command(master, [cmake_worker, token])
            try:
                master.start()
                status = master.wait_running(timeout=60)
                assert_single_owners(self, status)
                self.assertEqual(len(status["slaves"]), 2)
                for slave in status["slaves"]:
                    self.assertEqual(os.readlink(f"/proc/{slave['pid']}/exe"), cmake_worker)
                # A rolling restart onto the pkg-config build: every shard's state handed from one
                # consumer to the other.
                set_command(master, [pc_worker, token])
                self.assertEqual(master.cli("reload").returncode, 0)
                out = master.cli("restart", "--wait")
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                status = master.wait_running(timeout=60)
                assert_single_owners(self, status)
                for slave in status["slaves"]:
                    self.assertEqual(os.readlink(f"/proc/{slave['pid']}/exe"), pc_worker)
                assert_stopped_cleanly(self, master, moves=8)
            finally:
                master.stop()
                master.kill_leftovers()


if __name__ == "__main__":
    unittest.main(verbosity=2)
