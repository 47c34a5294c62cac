#!/usr/bin/python3
"""docs/http.md's examples run: every ```sh block, in the document's order, against a real daemon
with spawned bots, answers the status its `# expect` line documents. The blocks use $MM, $TOKEN and
$ADMIN as the document says; the status is read by adding -w to each curl."""
import os
import re
import subprocess
import tempfile
import unittest

from support import Fleet, http_settings

SOURCE = os.environ.get("MESHMASTER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(SOURCE, "docs", "http.md")
READ = "docs-read-token-0123456789"
ADMIN = "docs-admin-token-0123456789"


def examples(text):
    """[(expected status, command)] of every ```sh block."""
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        expect = re.search(r"^# expect (\d{3})$", block, re.MULTILINE)
        commands = [line for line in block.splitlines() if line and not line.startswith("#")]
        found.append((int(expect.group(1)) if expect else None, "\n".join(commands)))
    return found


class HttpDocs(unittest.TestCase):
    def test_every_curl_example_answers_its_documented_status(self):
        with open(DOC) as f:
            blocks = examples(f.read())
        self.assertGreaterEqual(len(blocks), 10)
        for expect, command in blocks:
            self.assertIsNotNone(expect, f"no '# expect NNN' line in:\n{command}")
            self.assertEqual(command.count("curl "), 1, f"one curl per example:\n{command}")
        # Every endpoint the document has a heading for has an example.
        with open(DOC) as f:
            headings = re.findall(r"^### `(GET|POST) (/[^` \[?]*)", f.read(), re.MULTILINE)
        for method, path in headings:
            shown = re.compile(re.escape(path).replace(re.escape("{id}"), "[^/\"? ]*"))
            self.assertTrue(any(shown.search(c) and (method == "GET") == ("-X POST" not in c) for _, c in blocks),
                            f"no example for {method} {path}")
        with tempfile.TemporaryDirectory(prefix="meshmaster-docs-") as d:
            settings, port = http_settings(d, READ, ADMIN)
            with Fleet(shards=16, slaves=2, settings={"http": settings}) as fleet:
                fleet.master.wait_running()
                env = dict(os.environ, MM=f"http://127.0.0.1:{port}", TOKEN=READ, ADMIN=ADMIN)
                for expect, command in blocks:
                    with self.subTest(command=command):
                        measured = command.replace("curl ", "curl -o /dev/null -w '%{http_code}\\n' ", 1)
                        out = subprocess.run(["bash", "-c", measured], capture_output=True, text=True, timeout=60, env=env)
                        self.assertEqual(out.stdout.strip().splitlines()[-1:], [str(expect)], out.stderr)
                # The last example stopped the daemon: cleanly.
                self.assertEqual(fleet.master.process.wait(60), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
