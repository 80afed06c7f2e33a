"""The dashboard end to end: a worker, the dashboard command and headless Chromium on isolated topics.

The browser tests drive Debian's chromium (/usr/bin/chromium) with
Playwright and skip when it is missing; `make browser` installs it. They
save screenshots to FLYTE_STATE_SCREENSHOT_DIR when it is set (the README's
images come from `FLYTE_STATE_SCREENSHOT_DIR=docs/images`), else to the
test's temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from processor.config import Settings
from processor.dashboard.app import create_app
from processor.fold import ExecutionFolder, InMemoryStateStore
from processor.fold.execution import RecordKind
from processor.fold.phases import node_phase_name, task_phase_name, workflow_phase_name
from processor.publisher import EventPublisher
from processor.streamfile import read_stream_lenient
from processor.synthetic import generate_executions
from processor import expectations
from support import REPO_ROOT, streams_dir, wait_for_facts

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR_VARIABLE = "FLYTE_STATE_SCREENSHOT_DIR"

# Milliseconds the browser waits for a change to show: the worker folds and
# publishes, the dashboard reads the state topics and the page reloads.
SHOW_TIMEOUT_MS = 120_000

DASHBOARD_START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    """Return the status code and JSON body of a GET request, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class DashboardProcess:
    """``python -m processor.cli dashboard`` on 127.0.0.1 with the environment of ``settings``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "DashboardProcess":
        env = dict(os.environ, **self.settings.to_env())
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "dashboard", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        return self

    def wait_ready(self, timeout_seconds: float) -> None:
        """Wait until the dashboard read the state topics up to their end offsets at its start."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dashboard exited with {self.process.returncode}:\n{self.log_tail()}"
            try:
                status, body = get_json(f"{self.url}/api/status")
                if status == 200 and body["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"dashboard not ready within {timeout_seconds:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_seconds: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def dashboard(module_settings, tmp_path_factory) -> Iterator[DashboardProcess]:
    process = DashboardProcess(module_settings, tmp_path_factory.mktemp("dashboard") / "dashboard.log").start()
    process.wait_ready(DASHBOARD_START_SECONDS)
    yield process
    exit_code = process.stop()
    assert exit_code == 0, f"dashboard exited with {exit_code}:\n{process.log_tail()}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a new, empty profile; the tests skip when /usr/bin/chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: the browser tests need Debian's chromium (run `make browser`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert errors == [], f"the page raised JavaScript errors: {errors}"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def screenshot_path(tmp_path: Path, name: str) -> Path:
    directory = Path(os.environ.get(SCREENSHOT_DIR_VARIABLE) or tmp_path)
    if not directory.is_absolute():
        directory = REPO_ROOT / directory
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def folded_stream(path: Path) -> dict[RecordKind, dict]:
    """Fold the stream file in order and return the resulting records by kind."""
    folder = ExecutionFolder(InMemoryStateStore())
    for item in read_stream_lenient(str(path)):
        folder.fold(item.event)
    return folder.store.records


def closure_of(state):
    if hasattr(state, "node_execution"):
        return state.node_execution.closure
    return state.task_execution.closure


def indent_of(page, record_key: str) -> float:
    """Return the left padding in pixels of a node's first cell, which grows with its depth in the tree."""
    cell = page.locator(f'tr.node[data-key="{record_key}"] td').first
    return float(cell.evaluate("cell => parseFloat(getComputedStyle(cell).paddingLeft)"))


def stream_path(name: str) -> Path:
    return streams_dir() / f"{name}.jsonl"


def execution_key_of_stream(name: str) -> str:
    expected = expectations.load(stream_path(name).with_suffix(".expect.json"))
    return next(iter(expected["workflow"]))


def test_execution_appears_live(page, dashboard, module_settings, module_worker, tmp_path):
    key = execution_key_of_stream("dynamic")
    row = page.locator(f'tr[data-key="{key}"]')
    page.goto(f"{dashboard.url}/")
    expect(page.locator("#live")).to_have_text("live")
    # A reload or navigation would drop this value.
    page.evaluate("window.sameDocument = true")

    EventPublisher(module_settings).publish_files([str(stream_path("dynamic"))])

    expect(row).to_be_visible(timeout=SHOW_TIMEOUT_MS)
    expect(row.locator(".phase")).to_have_text("SUCCEEDED", timeout=SHOW_TIMEOUT_MS)
    assert page.evaluate("window.sameDocument") is True

    others = [name for name in ("happy-path", "cache-hit", "retry-then-fail") if stream_path(name).exists()]
    EventPublisher(module_settings).publish_files([str(stream_path(name)) for name in others])
    for name in others:
        other_row = page.locator(f'tr[data-key="{execution_key_of_stream(name)}"]')
        expect(other_row.locator(".phase")).not_to_have_text("UNDEFINED", timeout=SHOW_TIMEOUT_MS)
    expect(page.locator("#page-range")).to_have_text(f"1–{1 + len(others)} of {1 + len(others)} executions")
    # A short viewport makes the full-page screenshot as tall as the list.
    page.set_viewport_size({"width": 1400, "height": 200})
    page.screenshot(path=str(screenshot_path(tmp_path, "dashboard-executions.png")), full_page=True)


def test_execution_page_shows_tree(page, dashboard, module_settings, module_worker, tmp_path):
    key = execution_key_of_stream("dynamic")
    EventPublisher(module_settings).publish_files([str(stream_path("dynamic"))])
    expected = folded_stream(stream_path("dynamic"))
    nodes = {node_key: state for node_key, state in expected[RecordKind.NODE].items() if node_key.startswith(key)}
    tasks = {task_key: state for task_key, state in expected[RecordKind.TASK].items() if task_key.startswith(key)}
    assert nodes and tasks, "the dynamic stream must have node and task records"

    page.goto(f"{dashboard.url}/")
    page.locator(f'tr[data-key="{key}"] td.name a').click(timeout=SHOW_TIMEOUT_MS)
    page.wait_for_url(f"**/executions/{key}")

    expect(page.locator("#execution-phase")).to_have_text("SUCCEEDED", timeout=SHOW_TIMEOUT_MS)
    for node_key, state in nodes.items():
        phase = node_phase_name(state.node_execution.closure.phase)
        expect(page.locator(f'tr.node[data-key="{node_key}"] .phase')).to_have_text(phase, timeout=SHOW_TIMEOUT_MS)
    for task_key, state in tasks.items():
        task_row = page.locator(f'tr.task[data-key="{task_key}"]')
        expect(task_row.locator(".phase")).to_have_text(task_phase_name(state.task_execution.closure.phase))
        expect(task_row.locator(".logs a")).to_have_count(len(state.task_execution.closure.logs))

    children = [(node_key, state.parent_node_id) for node_key, state in nodes.items() if state.parent_node_id]
    assert children, "the dynamic stream must have child nodes"
    for node_key, parent_id in children:
        assert indent_of(page, node_key) > indent_of(page, f"{key}/{parent_id}")
    started = sum(1 for state in [*nodes.values(), *tasks.values()] if closure_of(state).HasField("started_at"))
    expect(page.locator("#timeline .bar")).to_have_count(started + 1)
    page.screenshot(path=str(screenshot_path(tmp_path, "dashboard-execution.png")), full_page=True)


def test_api_serves_execution(dashboard, module_settings, module_worker):
    stream = stream_path("retry-then-fail")
    expected = expectations.load(stream.with_suffix(".expect.json"))
    key = next(iter(expected["workflow"]))
    EventPublisher(module_settings).publish_files([str(stream)])
    assert wait_for_facts(module_settings, expected, module_worker) == []

    deadline = time.monotonic() + 30
    while True:
        status, body = get_json(f"{dashboard.url}/api/executions/{key}")
        phase = body.get("workflow", {}).get("execution", {}).get("closure", {}).get("phase") if status == 200 else None
        if phase == expected["workflow"][key]["phase"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert status == 200
    assert phase == expected["workflow"][key]["phase"]
    assert {task["key"] for task in body["tasks"]} >= set(expected["task"])
    name = key.rsplit(":", 1)[1]
    status, listing = get_json(f"{dashboard.url}/api/executions?q={name}&phase={phase}")
    assert status == 200
    assert [item["key"] for item in listing["items"]] == [key]
    status, missing = get_json(f"{dashboard.url}/api/executions/flytesnacks:development:nosuchexecution")
    assert status == 404
    assert "not found" in missing["error"]


def test_dashboard_survives_worker_restart(page, dashboard, module_settings, module_worker):
    execution = generate_executions(1, seed=4242, project="restart-check")[0]
    row = page.locator(f'tr[data-key="{execution.key}"]')
    page.goto(f"{dashboard.url}/")
    expect(page.locator("#live")).to_have_text("live")

    exit_code = module_worker.stop()
    assert exit_code == 0, f"worker exited with {exit_code}:\n{module_worker.log_tail()}"
    module_worker.start()
    publisher = EventPublisher(module_settings)
    for event in execution.events:
        publisher.publish_event(event)
    publisher.flush()

    final_phase = workflow_phase_name(execution.final_phase)
    expect(row.locator(".phase")).to_have_text(final_phase, timeout=SHOW_TIMEOUT_MS)


class InThreadServer:
    """uvicorn serving an app in a thread of the test process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Outside the main thread sse-starlette cannot see uvicorn's shutdown, so
        # open event streams would hold it up without the graceful timeout.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_list_pages_through_10000(page):
    from unit.dashboard_records import large_cache

    cache = large_cache(10_000)
    cache.mark_ready()
    rows = page.locator("#execution-rows tr")

    with InThreadServer(create_app(cache)) as server:
        started = time.monotonic()
        page.goto(f"{server.url}/")
        expect(page.locator("#page-range")).to_have_text("1–100 of 10,000 executions")
        loaded_seconds = time.monotonic() - started
        expect(rows).to_have_count(100)
        expect(rows.first.locator("td.name")).to_have_text("e09999")

        page.locator("#page-next").click()
        expect(page.locator("#page-range")).to_have_text("101–200 of 10,000 executions")
        expect(rows.first.locator("td.name")).to_have_text("e09899")

        page.locator("#filter-phase").select_option("FAILED")
        expect(page.locator("#page-range")).to_have_text("1–100 of 3,333 executions")
        expect(rows.locator(".phase").first).to_have_text("FAILED")

        page.locator("#filter-q").fill("e04242")
        expect(rows).to_have_count(0)
        page.locator("#filter-phase").select_option("")
        expect(rows).to_have_count(1)
        assert "q=e04242" in page.url
        page.goto("about:blank")

    # Loose bound: the page fetches and renders 100 rows, never all 10,000.
    assert loaded_seconds < 10


def test_dashboard_waits_for_missing_topics(kafka_bootstrap, tmp_path):
    from processor.topics import ensure_topics
    from support import isolated_settings

    # Topics that no worker has created yet: the dashboard must keep retrying, not stop.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state")
    process = DashboardProcess(settings, tmp_path / "dashboard.log").start()
    try:
        body = None
        deadline = time.monotonic() + DASHBOARD_START_SECONDS
        while body is None and time.monotonic() < deadline:
            assert process.process.poll() is None, process.log_tail()
            try:
                status, body = get_json(f"{process.url}/api/status")
            except OSError:
                time.sleep(0.3)
        assert body is not None, process.log_tail()
        assert body["ready"] is False

        ensure_topics(settings)
        process.wait_ready(DASHBOARD_START_SECONDS)
    finally:
        exit_code = process.stop()
    assert exit_code == 0, process.log_tail()
