#!/usr/bin/python3
"""The Dockerfile's runtime stage and deploy/compose/, checked without a Docker engine (none runs here).

- Every shared library the shipped binaries need (`ldd` of the same binaries in the build tree)
  comes from a Debian package the runtime stage has: one of `scripts/install-deps --print-runtime`,
  or a package of debian:12-slim itself (Essential: yes or Priority: required), or a dependency of
  either (apt installs those too). This machine is Debian 12 like the image, so `dpkg -S` and
  `dpkg-query` here answer for it.
- The runtime stage runs as a user that is not root, and ships stripped binaries.
- compose.yaml parses, runs redis, the gateway and meshmaster from this Dockerfile, and the config it
  mounts passes `meshmaster check-config` (with the image's paths mapped to this machine's).
"""
import json
import os
import re
import shlex
import subprocess
import tempfile
import tomllib
import unittest

SOURCE = os.environ.get("MESHMASTER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHMASTER_BUILD_DIR", os.path.join(SOURCE, "build", "release"))
DOCKERFILE = os.path.join(SOURCE, "Dockerfile")
COMPOSE_DIR = os.path.join(SOURCE, "deploy", "compose")

# Where in the build tree each file the runtime stage ships comes from (the Dockerfile's build
# stage installs or copies it there from these). A file shipped that is not here fails the test.
BUILT = {
    "/opt/meshmaster/bin/meshmaster": "master/meshmaster",
    "/opt/meshmaster/examples/bot": "examples/bot/bot",
    "/opt/meshmaster/examples/gateway": "examples/gateway/gateway",
}

try:
    import yaml
except ImportError:  # Debian's python3-yaml
    yaml = None


def instructions(text):
    """The Dockerfile's instructions per stage name: [(KEYWORD, arguments)], continuations joined."""
    stages, current, logical = {}, None, ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.partition(" ")
        logical = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
            current = match.group(1) if match else rest.split()[0]
            stages[current] = []
        stages[current].append((keyword, rest.strip()))
    return stages


def shipped(runtime):
    """{image path: build-stage path} of every file COPY --from=build puts into the runtime stage."""
    files = {}
    for keyword, rest in runtime:
        if keyword != "COPY" or "--from=build" not in rest:
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        *sources, destination = args
        for src in sources:
            files[destination + os.path.basename(src) if destination.endswith("/") else destination] = src
    return files


def runtime_packages():
    out = subprocess.run([os.path.join(SOURCE, "scripts", "install-deps"), "--print-runtime"], capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def libraries(binary):
    """{soname: resolved path} by ldd; a library ldd cannot find maps to None."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))", line)
        if match:
            libs[match.group(1)] = match.group(3)
    return libs


def owning_package(path):
    """The Debian package that installed `path`, trying the forms merged /usr gives one file."""
    real = os.path.realpath(path)
    candidates = []
    for p in (path, real):
        candidates.append(p)
        if p.startswith("/usr/lib/") or p.startswith("/usr/lib64/"):
            candidates.append(p[len("/usr"):])
        elif p.startswith("/lib"):
            candidates.append("/usr" + p)
    for candidate in candidates:
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].split(",")[0].strip()
    return None


def installed_packages():
    """{package: (essential, priority, [dependency names])} of every installed package; of each
    alternative ("a | b") the first installed one, as apt would have it."""
    fmt = "${Package}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${db:Status-Abbrev}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        name, essential, priority, depends, status = line.split("\t")
        if not status.startswith("ii"):
            continue
        rows[name] = (essential, priority, depends)
    table = {}
    for name, (essential, priority, depends) in rows.items():
        names = []
        for group in depends.split(","):
            alternatives = [re.sub(r"\s*\(.*\)|:any|:\w+$", "", a).strip() for a in group.split("|")]
            chosen = next((a for a in alternatives if a in rows), None)
            if chosen:
                names.append(chosen)
        table[name] = (essential == "yes", priority == "required", names)
    return table


def closure(seeds, table):
    seen, todo = set(), list(seeds)
    while todo:
        name = todo.pop()
        if name in seen or name not in table:
            continue
        seen.add(name)
        todo.extend(table[name][2])
    return seen


class RuntimeStage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DOCKERFILE) as f:
            cls.stages = instructions(f.read())
        cls.runtime = cls.stages["runtime"]
        cls.build = cls.stages["build"]
        cls.shipped = shipped(cls.runtime)

    def test_the_runtime_stage_installs_the_runtime_list(self):
        runs = [rest for keyword, rest in self.runtime if keyword == "RUN"]
        self.assertTrue(any(re.search(r"install-deps --runtime\b", r) for r in runs), runs)
        packages = runtime_packages()
        for package in packages:  # a misspelt name would break the image's build
            out = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, f"scripts/install-deps --print-runtime: no Debian package {package}")

    def test_every_shipped_binary_finds_its_libraries_in_the_image(self):
        self.assertEqual(set(self.shipped), set(BUILT), "the runtime stage ships other files than this test knows")
        table = installed_packages()
        base = {name for name, (essential, required, _) in table.items() if essential or required}
        listed = runtime_packages()
        not_here = [p for p in listed if p not in table]
        self.assertEqual(not_here, [], "runtime packages not installed on this machine: cannot check against them")
        available = closure(base | set(listed), table)
        problems = []
        for image_path, build_path in BUILT.items():
            binary = os.path.join(BUILD, build_path)
            self.assertTrue(os.access(binary, os.X_OK), f"{binary} not built")
            for soname, path in libraries(binary).items():
                if path is None:
                    problems.append(f"{image_path}: {soname}: not found by ldd")
                    continue
                package = owning_package(path)
                if package is None:
                    problems.append(f"{image_path}: {soname} ({path}) belongs to no Debian package")
                elif package not in available:
                    problems.append(f"{image_path}: {soname} ({path}) is in {package}, which the runtime stage "
                                    f"does not install: add it to runtime_packages in scripts/install-deps")
        self.assertEqual(problems, [])

    def test_the_image_links_nothing_of_meshmaster_dynamically(self):
        # The install also puts libmeshmaster_*.so under the prefix; the runtime stage ships none,
        # so the binaries must not need one.
        for image_path, build_path in BUILT.items():
            own = [s for s in libraries(os.path.join(BUILD, build_path)) if "meshmaster" in s]
            self.assertEqual(own, [], image_path)

    def test_it_runs_as_a_user_that_is_not_root(self):
        users = [rest for keyword, rest in self.runtime if keyword == "USER"]
        self.assertTrue(users, "the runtime stage has no USER: it runs as root")
        user, _, group = users[-1].partition(":")
        self.assertNotIn(user, ("root", "0"))
        self.assertNotIn(group, ("root", "0"))
        created = " ".join(rest for keyword, rest in self.runtime if keyword == "RUN")
        self.assertRegex(created, rf"useradd\b[^&]*\s{re.escape(user)}(\s|$)", "the USER is never created")

    def test_the_shipped_binaries_are_stripped(self):
        # Each file shipped is made by a build-stage command that strips it: `cmake --install
        # --strip` for what lands under its --prefix, `install --strip`/`strip` for the examples.
        commands = [c.strip() for keyword, rest in self.build if keyword == "RUN" for c in rest.split("&&")]
        for image_path, source in self.shipped.items():
            makers = [c for c in commands
                      if re.search(rf"\s{re.escape(source)}(\s|$)", c)
                      or any(source.startswith(p.rstrip("/") + "/") for p in re.findall(r"--prefix[ =](\S+)", c))]
            self.assertTrue(makers, f"{image_path}: no build-stage command makes {source}")
            for command in makers:
                self.assertRegex(command, r"--strip\b|(^|\s)-s(\s|$)|^strip\s", f"{image_path} is not stripped: {command}")

    def test_the_healthcheck_asks_healthz_with_a_tool_the_image_has(self):
        checks = [rest for keyword, rest in self.runtime if keyword == "HEALTHCHECK"]
        self.assertEqual(len(checks), 1, "the runtime stage has no HEALTHCHECK")
        command = json.loads(checks[0][checks[0].index("CMD") + 3:].strip())
        self.assertEqual(command[0], "curl")
        self.assertIn("curl", runtime_packages())
        self.assertIn("--fail", command)  # a 5xx must fail the check
        url = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/healthz", command[-1])
        self.assertIsNotNone(url, command)
        # The image's configuration (deploy/compose) serves HTTP on that port, and the port is exposed.
        with open(os.path.join(SOURCE, "deploy", "compose", "meshmaster.toml")) as f:
            config = f.read()
        http = config.split("\n[http]\n", 1)
        self.assertEqual(len(http), 2, "deploy/compose/meshmaster.toml has no [http] table")
        self.assertRegex(http[1].split("\n[", 1)[0], rf'listen = "0\.0\.0\.0:{url.group(1)}"')
        exposed = " ".join(rest for keyword, rest in self.runtime if keyword == "EXPOSE").split()
        self.assertIn(url.group(1), exposed)

    def test_the_state_directory_is_a_volume_the_user_owns(self):
        volumes = [rest for keyword, rest in self.runtime if keyword == "VOLUME"]
        workdirs = [rest for keyword, rest in self.runtime if keyword == "WORKDIR"]
        self.assertEqual(volumes, ["/var/lib/meshmaster"])
        self.assertEqual(workdirs[-1], "/var/lib/meshmaster")
        created = " ".join(rest for keyword, rest in self.runtime if keyword == "RUN")
        self.assertRegex(created, r"install -d -o meshmaster -g meshmaster [^&]*/var/lib/meshmaster")


@unittest.skipIf(yaml is None, "python3-yaml is not installed")
class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(COMPOSE_DIR, "compose.yaml")) as f:
            cls.compose = yaml.safe_load(f)
        cls.services = cls.compose["services"]
        with open(DOCKERFILE) as f:
            cls.runtime = instructions(f.read())["runtime"]
        cls.config_path = os.path.join(COMPOSE_DIR, "meshmaster.toml")
        with open(cls.config_path, "rb") as f:
            cls.config = tomllib.load(f)

    def test_it_runs_redis_the_gateway_and_meshmaster_from_this_dockerfile(self):
        self.assertEqual(set(self.services), {"redis", "gateway", "meshmaster"})
        # gateway and meshmaster: the one image, built from this Dockerfile (each says how, so
        # that compose never tries to pull it).
        images = set()
        for name in ("gateway", "meshmaster"):
            build = self.services[name]["build"]
            context = os.path.normpath(os.path.join(COMPOSE_DIR, build["context"]))
            self.assertEqual(os.path.join(context, build["dockerfile"]), os.path.normpath(DOCKERFILE), name)
            images.add(self.services[name]["image"])
        self.assertEqual(len(images), 1, images)
        self.assertIn(self.services["gateway"]["entrypoint"][0], shipped(self.runtime))
        self.assertTrue(self.services["redis"]["image"].startswith("redis:"))

    def test_the_fleet_agrees_with_itself(self):
        meshmaster = self.services["meshmaster"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in meshmaster["volumes"]}
        # The config is mounted where the daemon is told to read it.
        config_in_image = meshmaster["command"][meshmaster["command"].index("-c") + 1]
        self.assertEqual(os.path.normpath(os.path.join(COMPOSE_DIR, mounts[config_in_image])), self.config_path)
        # The state lives on the volume, the bots are a program the image ships, and they reach the
        # gateway by its service name on the port it listens on, for as many shards.
        self.assertIn("/var/lib/meshmaster", mounts)
        for key in ("event_log", "control_socket"):
            self.assertTrue(self.config[key].startswith("/var/lib/meshmaster/"), key)
        command = self.config["slaves"]["command"]
        self.assertIn(command[0], shipped(self.runtime))
        gateway = self.services["gateway"]["command"]
        port = gateway[gateway.index("--listen") + 1].rsplit(":", 1)[1]
        self.assertEqual(command[command.index("--gateway") + 1], f"gateway:{port}")
        self.assertEqual(int(gateway[gateway.index("--shards") + 1]), self.config["shards"])
        # The slave port the image exposes and compose publishes is the one the config listens on.
        listen_port = self.config["listen"].rsplit(":", 1)[1]
        self.assertIn(("EXPOSE", listen_port), self.runtime)
        self.assertIn(f"{listen_port}:{listen_port}", meshmaster["ports"])
        self.assertIn("MESHMASTER_SECRET", meshmaster["environment"])

    def test_the_mounted_config_passes_check_config(self):
        # The image's paths mapped to this machine's: the state directory to a temporary one, the
        # shipped programs to the build tree. Warnings (a slave command that is not executable)
        # count as failures here.
        with open(self.config_path) as f:
            text = f.read()
        with tempfile.TemporaryDirectory() as state:
            text = text.replace("/var/lib/meshmaster", state)
            for image_path, build_path in BUILT.items():
                text = text.replace(image_path, os.path.join(BUILD, build_path))
            config = os.path.join(state, "meshmaster.toml")
            with open(config, "w") as f:
                f.write(text)
            out = subprocess.run([os.path.join(BUILD, "master", "meshmaster"), "check-config", "-c", config],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual((out.returncode, out.stderr), (0, ""), out.stdout)
        self.assertIn("configuration ok: 16 shards over 2 slaves", out.stdout)


if __name__ == "__main__":
    unittest.main()
