"""The pages in a real headless Chromium (Debian's, driven by Selenium and chromedriver).

A real sync runs on the local stack (git host -> RQ worker -> API server ->
Redis records), the app is served by a real WSGI server on loopback, and the
browser follows the links a developer would: overview -> repository -> sync,
then the operator logs in on /queue and retries the failed sync job.
Screenshots of the sync pages are written to the test's tmp dir.
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from pullbridge import keys
from pullbridge.config import load_config
from pullbridge.queueing import request_sync
from tests.pages.conftest import OPERATOR_ENV, OPERATOR_TOKEN
from tests.worker.sync_manifests import app_files

pytestmark = pytest.mark.stack

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1280,1100")
WAIT = 60  # a ceiling for page loads on a busy machine, not a performance check


@pytest.fixture
def browser(tmp_path, monkeypatch):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("browser tests need selenium (pip install -e '.[test]')")
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download a browser or driver

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("browser tests need Debian's chromium and chromium-driver packages (apt-get install -y "
                    "chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


class Deployment:
    """Pullbridge for one test: config file, sync jobs run by an RQ worker, the web app on loopback."""

    def __init__(self, redis_conn, namespace, repo, tmp_path, monkeypatch):
        self.conn = redis_conn
        path = tmp_path / "pullbridge.yaml"
        self.data = {
            "server": {"operator_token_env": OPERATOR_ENV},
            "worker": {"inventory_namespace": namespace, "lock_wait": "1s"},
            "repos": [{"name": "app", "url": repo.http_url, "provider": "generic", "secret_env": "PB_TEST_SECRET",
                       "namespace": namespace, "retries": 2, "backoff": ["1s"]}],
        }
        path.write_text(json.dumps(self.data))
        monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
        monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
        monkeypatch.setenv("PB_TEST_SECRET", "unused-webhook-secret")
        self.config = load_config(path)
        self.repo = self.config.repos[0]
        self.server = None

    def sync(self, sha: str) -> str:
        request = request_sync(self.conn, self.config, self.repo, sha, reason="push", delivery=f"delivery-{sha[:8]}")
        queue = Queue(keys.SYNC_QUEUE, connection=self.conn)
        SimpleWorker([queue], connection=self.conn).work(burst=True)
        return request.job_id

    def serve(self, **server) -> str:
        """Serve the app on loopback; ``server`` overrides settings of the config's ``server:``."""
        from werkzeug.serving import make_server

        from pullbridge.config import parse_config
        from tests.pages.conftest import redis_url
        from webhook import create_app

        config = parse_config({**self.data, "server": {**self.data["server"], **server}}) if server else self.config
        app = create_app(config, redis_url=redis_url(self.conn))
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def deployment(redis_conn, namespace, git_repo, tmp_path, monkeypatch):
    repo = git_repo("pages")
    made = Deployment(redis_conn, namespace, repo, tmp_path, monkeypatch)
    made.git = repo
    yield made
    made.stop()


def test_follow_a_sync_from_the_overview_and_retry_the_failed_job(deployment, browser, namespace, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    git = deployment.git
    sha1 = git.commit_and_push("v1", app_files("1.0"))
    deployment.sync(sha1)
    sha2 = git.commit_and_push("v2", app_files("2.0"))
    deployment.sync(sha2)
    sha3 = git.commit_and_push("v3: a negative replica count", app_files("3.0", replicas=-1))
    failed_job_id = deployment.sync(sha3)
    failed = FailedJobRegistry(queue=Queue(keys.SYNC_QUEUE, connection=deployment.conn))
    assert failed_job_id in failed, "the invalid commit's sync job should have failed for good"
    base = deployment.serve()
    wait = WebDriverWait(browser, WAIT)

    # The overview: the repo is failing; the applied commit is still the good one.
    browser.get(base + "/")
    assert browser.title == "Repositories · Pullbridge"
    row = browser.find_element(By.ID, "repo-app")
    assert "failing" in row.text and sha2[:12] in row.text
    assert "fluxdemo" in row.text  # the error names the object
    browser.save_screenshot(str(tmp_path / "overview.png"))
    row.find_element(By.CSS_SELECTOR, "a.repo-link").click()

    # The repository: three syncs, newest first.
    wait.until(ec.title_contains("app"))
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.history-row")
    assert [sha in r.text for r, sha in zip(rows, (sha3[:12], sha2[:12], sha1[:12]))] == [True] * 3
    assert "failure" in rows[0].text and "2 configured" in rows[1].text and "3 created" in rows[2].text
    browser.save_screenshot(str(tmp_path / "repo.png"))
    rows[1].find_element(By.CSS_SELECTOR, "a.sync-link").click()

    # The second sync: what changed, from which file, how long each phase took.
    wait.until(ec.presence_of_element_located((By.ID, "headline")))
    assert browser.find_element(By.ID, "headline").text == f"Applied {sha2[:12]}: 2 object(s) changed, 1 unchanged"
    assert sha2 in browser.find_element(By.ID, "commit").text
    changed = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#changes tr.change.act-configured")]
    assert f"configured Deployment {namespace} fluxdemo deploy/app.yaml 2" in changed
    assert f"configured ConfigMap {namespace} nginx-conf deploy/app.yaml 1" in changed
    assert "1 unchanged object" in browser.find_element(By.CSS_SELECTOR, "#changes details summary").text
    timings = browser.find_element(By.ID, "timings").text
    assert all(phase in timings for phase in ("fetch", "render", "apply", "prune"))
    assert "delivery-" in browser.page_source and "A newer sync of this repository exists" in browser.page_source
    browser.save_screenshot(str(tmp_path / "sync.png"))

    # The failed sync names the object and the file.
    browser.find_element(By.LINK_TEXT, "the latest sync").click()
    error = wait.until(ec.presence_of_element_located((By.ID, "error"))).text
    assert f"Object Deployment in namespace {namespace} named fluxdemo, declared in deploy/app.yaml (document 2)" in error
    assert "spec.replicas" in error
    assert sha2[:12] in browser.find_element(By.ID, "still-applied").text
    browser.save_screenshot(str(tmp_path / "sync-failed.png"))

    # The queue: the failed job is listed; the operator logs in and retries it.
    browser.find_element(By.LINK_TEXT, "Queue").click()
    job_row = wait.until(ec.presence_of_element_located((By.ID, f"failed-{failed_job_id}")))
    assert "sync app" in job_row.text and "PermanentError" in job_row.text
    assert not job_row.find_elements(By.CSS_SELECTOR, "button.retry")
    browser.find_element(By.LINK_TEXT, "Log in with the operator token").click()
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(OPERATOR_TOKEN)
    browser.find_element(By.ID, "login-submit").click()
    retry = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#failed-{failed_job_id} button.retry")))
    browser.save_screenshot(str(tmp_path / "queue.png"))
    retry.click()
    notice = wait.until(ec.presence_of_element_located((By.ID, "notice"))).text
    assert failed_job_id in notice and "is queued again" in notice
    assert not browser.find_elements(By.ID, f"failed-{failed_job_id}")
    assert browser.find_element(By.CSS_SELECTOR, "#depth-pullbridge-sync td.queued").text == "1"
    assert failed_job_id not in failed
    assert failed_job_id in Queue(keys.SYNC_QUEUE, connection=deployment.conn).get_job_ids()
    print(f"screenshots: {tmp_path}")


def test_unknown_sync_in_the_browser_is_a_404_page(deployment, browser):
    base = deployment.serve()
    browser.get(base + "/syncs/app-19700101T000000-000000")
    assert browser.title == "Not found · Pullbridge"
    assert "No sync with id" in browser.find_element(By_tag(), "main").text


def By_tag():
    from selenium.webdriver.common.by import By
    return By.TAG_NAME


def test_drift_diffs_and_a_suspended_repo_in_the_browser(deployment, browser, namespace, tmp_path):
    from selenium.webdriver.common.by import By

    from worker import history

    sha = deployment.git.commit_and_push("v1", app_files("1.0"))
    deployment.sync(sha)
    record = history.SyncRecord("app", "drift", None, sha=sha)
    record.add([{"object": f"Deployment/{namespace}/fluxdemo", "action": "configured",
                 "source": "deploy/app.yaml, doc 2",
                 "diffs": [{"field": "spec.replicas", "live": 4, "declared": 1, "manager": "kubectl",
                            "changed_at": "2026-11-26T08:00:00Z", "corrected": True}]},
                {"object": f"ConfigMap/{namespace}/nginx-conf", "action": "unchanged",
                 "source": "deploy/app.yaml, doc 1"}])
    record.phase("scan")
    record.phase("apply")
    record.result = "success"
    history.save(deployment.conn, record, applied_sha=sha)
    deployment.conn.hset(keys.state("app"), mapping={"suspended": "1", "last_check_at": record.finished_at})
    base = deployment.serve()

    browser.get(base + "/")
    row = browser.find_element(By.ID, "repo-app").text
    assert "SUSPENDED" in row.upper() and "neither synced nor corrected until resumed" in row
    browser.save_screenshot(str(tmp_path / "overview-suspended.png"))
    browser.get(f"{base}/syncs/{record.id}")
    drift = browser.find_element(By.ID, "drift").text
    assert "spec.replicas" in drift and "kubectl" in drift and "corrected" in drift
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#drift td")]
    assert cells[1:4] == ["spec.replicas", "4", "1"]
    assert "drift correction" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    browser.save_screenshot(str(tmp_path / "sync-drift.png"))


def test_a_commit_status_link_opens_the_protected_sync_page_for_a_logged_in_browser(deployment, browser):
    """The session cookie is SameSite=Strict, so a browser leaves it out of a navigation from another
    site, such as a commit status's "Details" link on the git host.  A logged-in developer must still
    land on the sync page, not on the login form; a browser without a session lands on the login."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from worker import history

    deployment.sync(deployment.git.commit_and_push("v1", app_files("1.0")))
    sync_id = history.history(deployment.conn, "app")[0]["id"]
    base = deployment.serve(protect_pages=True)
    wait = WebDriverWait(browser, WAIT)
    git_host_page = f"data:text/html,<a id='details' href='{base}/syncs/{sync_id}'>Details</a>"

    browser.get(git_host_page)
    browser.find_element(By.ID, "details").click()
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(OPERATOR_TOKEN)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.title_is(f"Sync {sync_id} · Pullbridge"))

    browser.get(git_host_page)
    browser.find_element(By.ID, "details").click()
    wait.until(ec.presence_of_element_located((By.ID, "headline")))
    assert browser.title == f"Sync {sync_id} · Pullbridge"
    assert browser.current_url == f"{base}/syncs/{sync_id}"

    browser.delete_all_cookies()
    browser.get(git_host_page)
    browser.find_element(By.ID, "details").click()
    wait.until(ec.presence_of_element_located((By.ID, "token")))
    assert browser.current_url == f"{base}/login?next=/syncs/{sync_id}"
