#!/usr/bin/python3
"""The dashboard (GET /, issue 15) in a real headless Chromium, driven by Selenium, against a daemon
with [http], its two tokens and spawned example bots: the page asks for a token and says when it is
refused, shows one cell per shard and every slave, refuses a restart with the read token, starts
one with the admin token through its form and shows it reach 100 %; the CLI, the event log and the
gateway's audit then agree that it completed and lost nothing. A screenshot goes to the test's log
directory (its path is printed).

Needs Debian's chromium, chromium-driver and python3-selenium (scripts/install-deps). Without them
the test skips, unless CI is set: there it must run. Chromium and its driver are stopped by PID."""
import json
import os
import signal
import socket
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

from support import Fleet, assert_exactly_once, assert_single_owners, http_settings
from fleet import build_dir, disruptions

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHARDS, SLAVES = 128, 4
READ_TOKEN = "dashboard-read-token-0123456789abcdef"
ADMIN_TOKEN = "dashboard-admin-token-0123456789abcdef"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = None
except ImportError as e:  # reported by the skip (or, under CI, by the failure) below
    SELENIUM = e

MISSING = [what for what, ok in (("chromium", os.access(CHROMIUM, os.X_OK)),
                                 ("chromium-driver", os.access(CHROMEDRIVER, os.X_OK)),
                                 ("python3-selenium", SELENIUM is None)) if not ok]
IN_CI = os.environ.get("CI", "") not in ("", "false", "0")


def log_dir():
    """Where this test's screenshot is kept after the run: MESHMASTER_TEST_LOG_DIR, or the build
    tree's test-logs/dashboard (the fleet's own directory is removed when the test ends)."""
    path = os.environ.get("MESHMASTER_TEST_LOG_DIR") or os.path.join(build_dir(), "test-logs", "dashboard")
    os.makedirs(path, exist_ok=True)
    return path


def descendants(pid):
    """Every process below `pid` (chromedriver's Chromium and the Chromium helpers), from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_browser(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0]
    except OSError:
        return False
    return b"chrom" in os.path.basename(argv0)


def http_get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class CuttableProxy:
    """A TCP relay on loopback between the browser and the daemon that the test can cut: every open
    connection closed at once (the event stream with them), and new ones refused until `resume()`.
    What a proxy restart or a network blip does to a page that follows the stream."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = []
        self.paused = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                if self.paused:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    client.close()
                    continue
                self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.paused = True
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open = []

    def resume(self):
        with self.lock:
            self.paused = False

    def close(self):
        self.cut()
        self.listener.close()


@unittest.skipIf(MISSING and not IN_CI, f"needs {', '.join(MISSING)} (scripts/install-deps); CI is not set")
class Dashboard(unittest.TestCase):
    def setUp(self):
        self.tokens = tempfile.TemporaryDirectory(prefix="meshmaster-dashboard-")
        self.addCleanup(self.tokens.cleanup)
        self.http, self.port = http_settings(self.tokens.name, READ_TOKEN, ADMIN_TOKEN)
        self.base = f"http://127.0.0.1:{self.port}"

    def start_browser(self):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1500", "--no-first-run", "--disable-extensions"):
            options.add_argument(argument)
        service = Service(executable_path=CHROMEDRIVER)  # Debian's driver: nothing is downloaded
        driver = webdriver.Chrome(service=service, options=options)
        driver_pid = service.process.pid

        def stop():
            # Chromium's PIDs before quit() (after it they have no parent to be found by), then any
            # of them still alive, by PID, once quit() returned or failed.
            pids = [driver_pid] + descendants(driver_pid)
            try:
                driver.quit()
            finally:
                for pid in pids:
                    if pid == driver_pid or is_browser(pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        return driver, stop

    def wait(self, driver, condition, what, timeout=120):
        """A liveness limit (the suite runs on two busy cores), not a speed goal."""
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
            lambda d: condition(d), message=f"the page never showed {what}")

    def submit_token(self, driver, token):
        field = self.wait(driver, lambda d: d.find_element(By.ID, "token-input").is_displayed()
                          and d.find_element(By.ID, "token-input"), "the token form")
        field.clear()
        field.send_keys(token)
        driver.find_element(By.ID, "token-submit").click()

    def test_the_page_shows_the_fleet_and_runs_a_rolling_restart_to_100_percent(self):
        fleet = Fleet(shards=SHARDS, slaves=SLAVES, rate=100, concurrency=8, settings={"http": self.http})
        try:  # not `with`: a daemon that fails to start must not leave the gateway running
            master = fleet.master.start()
            before = master.wait_running(timeout=120)
            self.check_assets()

            # The browser reaches the daemon through a relay the test can cut (the stream's resume).
            proxy = CuttableProxy(self.port)
            self.addCleanup(proxy.close)
            page = f"http://127.0.0.1:{proxy.port}"
            driver, stop_browser = self.start_browser()
            screenshot = os.path.join(log_dir(), "dashboard.png")
            if os.path.exists(screenshot):
                os.remove(screenshot)  # a failed run must not leave an earlier run's picture behind
            try:
                driver.get(page + "/")
                # A wrong token is refused, and the page says so.
                self.submit_token(driver, "not-a-token")
                self.wait(driver, lambda d: "401" in d.find_element(By.ID, "token-error").text, "the 401 refusal")
                self.submit_token(driver, READ_TOKEN)

                # One cell per shard, every slave in the table.
                self.wait(driver, lambda d: d.find_element(By.ID, "shard-map").get_attribute("data-shards")
                          == str(SHARDS), "the shard map")
                self.assertEqual(driver.execute_script("return document.querySelectorAll('.shard-cell').length"),
                                 SHARDS)
                expected = sorted(s["id"] for s in before["slaves"])
                self.wait(driver, lambda d: sorted(r.get_attribute("data-slave") for r in
                                                   d.find_elements(By.CSS_SELECTOR, "#slave-rows tr")) == expected,
                          f"the slaves {expected}")
                rows = {r.get_attribute("data-slave"): r.text for r in driver.find_elements(By.CSS_SELECTOR, "#slave-rows tr")}
                for s in before["slaves"]:
                    self.assertIn(str(s["pid"]), rows[s["id"]])
                    self.assertIn(s["phase"], rows[s["id"]])
                    self.assertIn(s["address"] or "—", rows[s["id"]])  # the host, or a dash when unknown
                # The read token is kept in this tab only: no cookie, nothing in localStorage.
                self.assertEqual(driver.execute_script("return sessionStorage.getItem('meshmaster.token')"), READ_TOKEN)
                self.assertEqual(driver.execute_script("return localStorage.length"), 0)
                self.assertEqual(driver.execute_script("return document.cookie"), "")
                # Hovering a cell names its owner and epoch.
                cell = driver.find_elements(By.CSS_SELECTOR, ".shard-cell")[SHARDS - 1]
                webdriver.ActionChains(driver).move_to_element(cell).perform()
                last = before["shards"][SHARDS - 1]
                self.wait(driver, lambda d: d.find_element(By.ID, "shard-detail").text.startswith(
                    f"Shard {SHARDS - 1}: owner {last['owner']}, epoch {last['epoch']}"), "the hovered shard")

                # The stream dropped while the daemon logs records: the page resumes after the last
                # record it showed (Last-Event-ID) and shows the missed ones once, in order.
                self.wait(driver, lambda d: d.find_element(By.ID, "stream-state").text == "Following the event stream.",
                          "the stream followed")
                proxy.cut()
                self.wait(driver, lambda d: "Event stream lost" in d.find_element(By.ID, "stream-state").text,
                          "the stream's loss")
                out = master.cli("reload")  # records written while the page cannot read them
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                proxy.resume()
                self.wait(driver, lambda d: "config_reloaded" in d.find_element(By.ID, "events").text,
                          "the records missed during the drop")
                self.assertIn("resumed after #", driver.find_element(By.ID, "stream-state").text)
                seqs = driver.execute_script(
                    "return [...document.querySelectorAll('#events li')].map(li => Number(li.textContent.split(' ')[0].slice(1)))")
                self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "the tail has no gap and no repeat")

                # The read token may not act: 403, said as such, and no restart.
                driver.find_element(By.ID, "restart-button").click()
                self.submit_token(driver, READ_TOKEN)
                self.wait(driver, lambda d: "403" in d.find_element(By.ID, "restart-answer").text, "the 403 refusal")
                self.assertEqual(master.status(summary=True)["restarts_completed"], 0)

                # The admin token, through the same form: the restart starts and reaches 100 %.
                driver.find_element(By.ID, "restart-button").click()
                self.submit_token(driver, ADMIN_TOKEN)
                self.wait(driver, lambda d: "accepted" in d.find_element(By.ID, "restart-answer").text,
                          "the restart accepted")
                progress = driver.find_element(By.ID, "restart-progress")
                self.wait(driver, lambda d: progress.get_attribute("data-state") in ("completed", "failed"),
                          "the restart's end", timeout=300)
                self.assertEqual(progress.get_attribute("data-state"), "completed",
                                 driver.find_element(By.ID, "restart-text").text)
                self.assertEqual(progress.get_attribute("value"), "100")
                self.assertIn("100 %", driver.find_element(By.ID, "restart-text").text)
                shown_restart = progress.get_attribute("data-restart")
                # The event stream reached the tail as it happened.
                self.wait(driver, lambda d: "restart_completed" in d.find_element(By.ID, "events").text,
                          "restart_completed in the event tail")
                # The table follows: every slave of the new generation.
                self.wait(driver, lambda d: all(r.get_attribute("data-slave").endswith("-g2") for r in
                                                d.find_elements(By.CSS_SELECTOR, "#slave-rows tr")),
                          "the new generation in the table")
                # And the map: the shard pointed at before is on its slot's new slave, one epoch on.
                moved_to = last["owner"].replace("-g1", "-g2")
                self.wait(driver, lambda d: d.find_element(By.ID, "shard-detail").text.startswith(
                    f"Shard {SHARDS - 1}: owner {moved_to}, epoch {last['epoch'] + 1}"), "the hovered shard moved")
                driver.save_screenshot(screenshot)
            finally:
                try:
                    if not os.path.exists(screenshot):
                        driver.save_screenshot(screenshot)  # what the page showed when it failed
                except Exception:  # noqa: BLE001 - the browser may be gone; the failure says why
                    pass
                stop_browser()
            print(f"dashboard screenshot: {screenshot}", flush=True)

            # What the daemon says, apart from the page: the restart completed, nothing was lost.
            after = master.wait_running(timeout=120)
            assert_single_owners(self, after)
            self.assertTrue(all(s["id"].endswith("-g2") for s in after["slaves"]), after["slaves"])
            self.assertEqual(after["last_restart"]["result"], "completed")
            self.assertEqual(str(after["last_restart"]["id"]), shown_restart)
            self.assertEqual(fleet.gateway.drain(), "drained")
            report = fleet.gateway.report()
            events = master.events()
        finally:
            fleet.close()

        assert_exactly_once(self, report)
        completed = [e for e in events if e["event"] == "restart_completed"]
        self.assertEqual([str(e["restart"]) for e in completed], [shown_restart])
        self.assertEqual(completed[0]["count"], SHARDS)
        names = [e["event"] for e in events]
        self.assertEqual(names.count("migration_completed"), SHARDS)
        self.assertEqual(disruptions(events), {"slaves_lost": 0, "slaves_killed": 0, "shards_orphaned": 0,
                                               "shards_recovered": 0, "recoveries_failed": 0, "moves_failed": 0})

    def check_assets(self):
        """The three files, served without a token, with their types and the headers that keep the
        page to its own code (strict CSP, nosniff) and fresh after an upgrade (no-cache)."""
        for path, kind in (("/", "text/html"), ("/dashboard.css", "text/css"), ("/dashboard.js", "text/javascript")):
            status, headers, body = http_get(self.base + path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["Content-Type"].startswith(kind), (path, headers))
            self.assertEqual(headers["Content-Security-Policy"], "default-src 'self'", path)
            self.assertEqual(headers["X-Content-Type-Options"], "nosniff", path)
            self.assertEqual(headers["Cache-Control"], "no-cache", path)
            self.assertTrue(body, path)
        with open(os.path.join(os.environ.get("MESHMASTER_SOURCE_DIR", "."), "master", "dashboard", "dashboard.js"),
                  "rb") as f:
            self.assertEqual(http_get(self.base + "/dashboard.js")[2], f.read(), "the binary serves the current page")
        status, _, body = http_get(self.base + "/v1/status")
        self.assertEqual(status, 401, body)
        status, _, body = http_get(self.base + "/v1/status", READ_TOKEN)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["shard_count"], SHARDS)


if __name__ == "__main__":
    unittest.main()
