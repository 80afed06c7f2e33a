"""The dashboard's HTTP API and pages, served from a cache filled without Kafka."""

import asyncio
import json
import time
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from processor.dashboard.app import DashboardRoutes, create_app
from processor.dashboard.cache import StateCache
from processor.fold.execution import RecordKind

from .dashboard_records import cache_from_events, large_cache, list_execution, stream_events

DYNAMIC_KEY = "flytesnacks:development:a3nehy3vh5fiobcogi7s"
RETRY_KEY = "flytesnacks:development:am8w3d6nos5nv2eqmkf2"


@pytest.fixture(scope="module")
def stream_client():
    """A client of an app whose cache contains the four example streams."""
    cache = StateCache()
    for name in ("happy-path", "dynamic", "cache-hit", "retry-then-fail"):
        cache_from_events(stream_events(name), cache)
    cache.mark_ready()
    with TestClient(create_app(cache)) as client:
        yield client


@pytest.fixture(scope="module")
def large_client():
    """A client of an app whose cache contains 10,000 executions."""
    cache = large_cache(10_000)
    cache.mark_ready()
    with TestClient(create_app(cache)) as client:
        yield client


def test_list_all_executions(stream_client):
    response = stream_client.get("/api/executions")
    body = response.json()

    assert response.status_code == 200
    assert body["total"] == 4
    assert body["offset"] == 0
    assert body["limit"] == 100
    assert body["ready"] is True
    assert [item["name"] for item in body["items"]] == [
        "aj33lzw16h8hf3qdnvot",
        "ajwk9lys1c787ly2o6if",
        "am8w3d6nos5nv2eqmkf2",
        "a3nehy3vh5fiobcogi7s",
    ]


def test_list_facets(stream_client):
    facets = stream_client.get("/api/executions").json()["facets"]

    assert facets["project"] == {"flytesnacks": 4}
    assert facets["domain"] == {"development": 4}
    assert facets["phase"] == {"FAILED": 1, "SUCCEEDED": 3}


@pytest.mark.parametrize(
    "query, expected_total",
    [
        ("project=flytesnacks", 10_000 // 3 + 1),
        ("domain=production", 5_000),
        ("phase=FAILED", 3_333),
        ("phase=failed", 3_333),
        ("phase=FAILED&phase=RUNNING", 6_666),
        ("phase=FAILED,RUNNING", 6_666),
        ("project=etl&domain=development&phase=RUNNING", 1_667),
        ("q=e0999", 10),
        ("q=E09999", 1),
        ("q=no-such-name", 0),
    ],
)
def test_list_filters(large_client, query, expected_total):
    body = large_client.get(f"/api/executions?{query}&limit=1000").json()

    assert body["total"] == expected_total
    assert len(body["items"]) == min(expected_total, 1000)


def test_list_filtered_items_match(large_client):
    items = large_client.get("/api/executions?project=etl&phase=RUNNING&limit=1000").json()["items"]

    assert {item["project"] for item in items} == {"etl"}
    assert {item["phase"] for item in items} == {"RUNNING"}


def test_list_paging(large_client):
    first = large_client.get("/api/executions?limit=100&offset=0").json()
    second = large_client.get("/api/executions?limit=100&offset=100").json()
    last = large_client.get("/api/executions?limit=100&offset=9950").json()

    assert first["total"] == 10_000
    assert [item["name"] for item in first["items"][:2]] == ["e09999", "e09998"]
    assert second["items"][0]["name"] == "e09899"
    assert not {item["key"] for item in first["items"]} & {item["key"] for item in second["items"]}
    assert len(last["items"]) == 50
    assert last["items"][-1]["name"] == "e00000"


def test_list_offset_past_end(large_client):
    body = large_client.get("/api/executions?offset=20000").json()

    assert body["total"] == 10_000
    assert body["items"] == []


def test_list_large_is_fast(large_client):
    # The bound is far above the measured time, 15-25 ms per request through
    # the TestClient with 10,000 executions on a 2-core machine, so that only
    # a pathological slowdown fails it.
    started = time.perf_counter()
    for offset in range(0, 1000, 100):
        large_client.get(f"/api/executions?phase=SUCCEEDED&offset={offset}")
    elapsed = time.perf_counter() - started

    assert elapsed < 5.0


@pytest.mark.parametrize(
    "query, message",
    [
        ("limit=0", "limit=0 is outside 1..1000"),
        ("limit=1001", "limit=1001 is outside 1..1000"),
        ("limit=ten", "limit='ten' is not a whole number"),
        ("offset=-1", "offset=-1 is outside"),
        ("phase=DONE", "unknown phase DONE"),
    ],
)
def test_list_bad_parameter(stream_client, query, message):
    response = stream_client.get(f"/api/executions?{query}")

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_execution_document(stream_client):
    response = stream_client.get(f"/api/executions/{DYNAMIC_KEY}")
    body = response.json()

    assert response.status_code == 200
    assert body["key"] == DYNAMIC_KEY
    assert body["workflow"]["execution"]["closure"]["phase"] == "SUCCEEDED"
    assert body["summary"]["nodeCount"] == len(body["nodes"])
    assert body["summary"]["taskCount"] == len(body["tasks"])


def test_execution_nodes(stream_client):
    nodes = stream_client.get(f"/api/executions/{DYNAMIC_KEY}").json()["nodes"]
    by_id = {node["node_id"]: node for node in nodes}

    assert set(by_id) == {"start-node", "n0", "n0-0-dn0", "n0-0-dn1", "n0-0-dn2", "end-node"}
    assert by_id["n0-0-dn1"]["key"] == f"{DYNAMIC_KEY}/n0-0-dn1"
    assert by_id["n0-0-dn1"]["state"]["parentNodeId"] == "n0"
    assert by_id["n0"]["state"]["nodeExecution"]["metadata"]["isDynamic"] is True
    assert [node["node_id"] for node in nodes][0] == "start-node"


def test_execution_task_attempts(stream_client):
    tasks = stream_client.get(f"/api/executions/{RETRY_KEY}").json()["tasks"]
    flaky = [task for task in tasks if task["task_name"] == "wf.flaky"]

    assert [task["retry_attempt"] for task in flaky] == [0, 1]
    assert {task["node_id"] for task in flaky} == {"n0"}
    closure = flaky[1]["state"]["taskExecution"]["closure"]
    assert closure["phase"] == "FAILED"
    assert closure["error"]["code"] == "USER:Exception"
    assert len(closure["logs"]) == 2
    assert closure["reasons"][0]["message"] == "task submitted to K8s"


def test_unknown_execution_404(stream_client):
    response = stream_client.get("/api/executions/flytesnacks:development:nosuchexecution")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "execution flytesnacks:development:nosuchexecution not found in the state topics"}


def test_invalid_execution_key_404(stream_client):
    response = stream_client.get("/api/executions/not-a-key")

    assert response.status_code == 404
    assert "invalid execution key 'not-a-key'" in response.json()["error"]


def test_org_execution_key(stream_client):
    cache = StateCache()
    key, workflow, summary = list_execution(1)
    workflow.execution.id.org = "acme"
    summary.execution_id.org = "acme"
    org_key = f"acme/{key}"
    cache.put(RecordKind.WORKFLOW, org_key, workflow)
    cache.put(RecordKind.SUMMARY, org_key, summary)

    with TestClient(create_app(cache)) as client:
        encoded = client.get(f"/api/executions/{quote(org_key, safe='')}")
        plain = client.get(f"/api/executions/{org_key}")

    assert encoded.status_code == 200
    assert plain.json()["key"] == org_key
    assert plain.json()["workflow"]["execution"]["id"]["org"] == "acme"


def test_unknown_api_path_404(stream_client):
    response = stream_client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


def test_status(stream_client):
    body = stream_client.get("/api/status").json()

    assert body["ready"] is True
    assert body["executions"] == 4
    assert body["error"] == ""


def test_list_page_html(stream_client):
    response = stream_client.get("/")

    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert 'data-page="executions"' in response.text
    assert "/static/dashboard.js?v=" in response.text


def test_execution_page_html(stream_client):
    response = stream_client.get(f"/executions/{DYNAMIC_KEY}")

    assert response.status_code == 200
    assert f'data-key="{DYNAMIC_KEY}"' in response.text


def test_execution_page_invalid_key(stream_client):
    response = stream_client.get("/executions/p:d:<script>")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")


def test_static_files_served(stream_client):
    script = stream_client.get("/static/dashboard.js")
    style = stream_client.get("/static/dashboard.css")

    assert script.status_code == 200
    assert "EventSource" in script.text
    assert style.status_code == 200


def collect_events(routes: DashboardRoutes, since: int, count: int, change=None) -> list:
    """Return the first ``count`` events of a stream, calling ``change()`` after the first one."""

    async def collect():
        events = []
        stream = routes._event_stream(since)
        try:
            async for event in stream:
                events.append(event)
                if len(events) == 1 and change is not None:
                    change()
                if len(events) == count:
                    return events
        finally:
            await stream.aclose()

    return asyncio.run(asyncio.wait_for(collect(), timeout=10))


def test_event_stream_reports_changes():
    cache = large_cache(2)
    routes = DashboardRoutes(cache, templates=None, title="test")
    key, workflow, _ = list_execution(7)

    events = collect_events(
        routes, cache.sequence, 2, change=lambda: cache.put(RecordKind.WORKFLOW, key, workflow)
    )

    assert events[0].event == "status"
    assert json.loads(events[0].data) == {"ready": False, "error": ""}
    assert events[1].event == "change"
    assert json.loads(events[1].data) == {"sequence": cache.sequence, "executions": [key], "reset": False}
    assert events[1].id == str(cache.sequence)


def test_event_stream_resets_stale_client():
    cache = large_cache(2)
    routes = DashboardRoutes(cache, templates=None, title="test")

    events = collect_events(routes, cache.sequence + 100, 2)

    assert json.loads(events[1].data)["reset"] is True


def test_event_stream_reports_status():
    cache = StateCache()
    routes = DashboardRoutes(cache, templates=None, title="test")

    events = collect_events(routes, 0, 2, change=lambda: cache.set_error("cannot reach the brokers"))

    assert [event.event for event in events] == ["status", "status"]
    assert json.loads(events[1].data) == {"ready": False, "error": "cannot reach the brokers"}
