"""Merges of task logs, custom_info and external resources in processor.fold.merge."""

import copy
import json

import pytest
from flyteidl.core import catalog_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format, struct_pb2

from processor.fold.merge import (
    filter_logs_for_phase,
    json_merge_patch,
    merge_custom_info,
    merge_external_resources,
    merge_logs,
)

from .builders import TaskPhase, copy_of, task_log


def names(logs) -> list[str]:
    return [log.name for log in logs]


def test_merge_logs_no_latest_keeps_stored():
    stored = [task_log("a"), task_log("b")]

    assert names(merge_logs(stored, [])) == ["a", "b"]


def test_merge_logs_no_stored():
    assert names(merge_logs([], [task_log("a")])) == ["a"]


def test_merge_logs_latest_first():
    merged = merge_logs([task_log("old")], [task_log("new1"), task_log("new2")])

    assert names(merged) == ["new1", "new2", "old"]


def test_merge_logs_same_uri_replaced():
    stored = [task_log("Kubernetes Logs (Pending)", "https://k8s/pod")]
    latest = [task_log("Kubernetes Logs", "https://k8s/pod")]

    assert names(merge_logs(stored, latest)) == ["Kubernetes Logs"]


def test_merge_logs_same_name_replaced():
    stored = [task_log("CloudWatch", "https://cw/stream-old")]
    latest = [task_log("CloudWatch", "https://cw/stream-new")]

    merged = merge_logs(stored, latest)

    assert len(merged) == 1
    assert merged[0].uri == "https://cw/stream-new"


def test_merge_logs_empty_names_not_matched():
    """An unnamed stored log is dropped only for its URI, not because a new log is unnamed too."""
    stored = [task_log("", "https://a")]
    latest = [task_log("", "https://b")]

    merged = merge_logs(stored, latest)

    assert [log.uri for log in merged] == ["https://b", "https://a"]


def test_merge_logs_inputs_unchanged():
    stored = [task_log("a")]
    latest = [task_log("a", "https://other")]
    stored_before = [copy_of(log) for log in stored]

    merge_logs(stored, latest)

    assert stored == stored_before


PENDING = {"show_while_pending": True}
HIDDEN = {"hide_once_finished": True}


@pytest.mark.parametrize(
    "phase, expected",
    [
        (TaskPhase.QUEUED, ["pending", "both"]),
        (TaskPhase.INITIALIZING, ["pending", "both"]),
        (TaskPhase.WAITING_FOR_RESOURCES, ["plain", "pending", "hidden", "both"]),
        (TaskPhase.RUNNING, ["plain", "pending", "hidden", "both"]),
        (TaskPhase.RETRYABLE_FAILED, ["plain", "pending", "hidden", "both"]),
        (TaskPhase.SUCCEEDED, ["plain", "pending"]),
        (TaskPhase.FAILED, ["plain", "pending"]),
        (TaskPhase.ABORTED, ["plain", "pending"]),
    ],
)
def test_filter_logs_for_phase(phase, expected):
    logs = [
        task_log("plain"),
        task_log("pending", show_while_pending=True),
        task_log("hidden", hide_once_finished=True),
        task_log("both", show_while_pending=True, hide_once_finished=True),
    ]

    assert names(filter_logs_for_phase(logs, phase)) == expected


# The examples of RFC 7386, Appendix A, as (original, patch, result).
RFC_7386_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize("original, patch, result", RFC_7386_EXAMPLES)
def test_json_merge_patch_rfc_examples(original, patch, result):
    assert json_merge_patch(json.loads(original), json.loads(patch)) == json.loads(result)


def test_json_merge_patch_inputs_unchanged():
    target = {"a": {"b": "c", "d": [1]}, "e": 1}
    patch = {"a": {"b": None, "x": {"y": 1}}, "e": None}
    target_before = copy.deepcopy(target)
    patch_before = copy.deepcopy(patch)

    json_merge_patch(target, patch)

    assert target == target_before
    assert patch == patch_before


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def test_merge_custom_info():
    merged = merge_custom_info(struct({"a": 1, "b": {"c": "x", "d": "y"}}), struct({"b": {"c": None, "e": True}}))

    assert json_format.MessageToDict(merged) == {"a": 1, "b": {"d": "y", "e": True}}


def test_merge_custom_info_empty_stored():
    merged = merge_custom_info(struct_pb2.Struct(), struct({"jobId": "j-1"}))

    assert json_format.MessageToDict(merged) == {"jobId": "j-1"}


def resource(index, retry_attempt=0, **fields) -> event_pb2.ExternalResourceInfo:
    return event_pb2.ExternalResourceInfo(index=index, retry_attempt=retry_attempt, **fields)


def identities(resources) -> list[tuple[int, int]]:
    return [(item.index, item.retry_attempt) for item in resources]


def test_external_resources_sorted_by_identity():
    stored = [resource(2), resource(0, 1)]
    latest = [resource(1), resource(0, 0), resource(2, 1)]

    merged = merge_external_resources(stored, latest)

    assert identities(merged) == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]


def test_external_resources_phase_overwritten():
    stored = [resource(0, phase=TaskPhase.RUNNING)]
    latest = [resource(0, phase=TaskPhase.QUEUED)]

    assert merge_external_resources(stored, latest)[0].phase == TaskPhase.QUEUED


@pytest.mark.parametrize("latest_id, expected", [("job-2", "job-2"), ("", "job-1")])
def test_external_resources_external_id(latest_id, expected):
    stored = [resource(0, external_id="job-1")]
    latest = [resource(0, external_id=latest_id)]

    assert merge_external_resources(stored, latest)[0].external_id == expected


@pytest.mark.parametrize(
    "latest_status, expected",
    [
        (catalog_pb2.CACHE_DISABLED, catalog_pb2.CACHE_HIT),
        (catalog_pb2.CACHE_POPULATED, catalog_pb2.CACHE_POPULATED),
        (catalog_pb2.CACHE_MISS, catalog_pb2.CACHE_MISS),
    ],
)
def test_external_resources_cache_status(latest_status, expected):
    stored = [resource(0, cache_status=catalog_pb2.CACHE_HIT)]
    latest = [resource(0, cache_status=latest_status)]

    assert merge_external_resources(stored, latest)[0].cache_status == expected


def test_external_resources_custom_info_replaced():
    stored = [resource(0, custom_info=struct({"a": 1, "b": 2}))]
    latest = [resource(0, custom_info=struct({"b": 3}))]

    merged = merge_external_resources(stored, latest)

    assert json_format.MessageToDict(merged[0].custom_info) == {"b": 3}


def test_external_resources_custom_info_kept():
    stored = [resource(0, custom_info=struct({"a": 1}))]
    latest = [resource(0, phase=TaskPhase.SUCCEEDED)]

    merged = merge_external_resources(stored, latest)

    assert json_format.MessageToDict(merged[0].custom_info) == {"a": 1}


def test_external_resources_logs_merged():
    stored = [resource(0, logs=[task_log("old", "https://old"), task_log("pod", "https://pod-pending")])]
    latest = [resource(0, logs=[task_log("pod", "https://pod")])]

    merged = merge_external_resources(stored, latest)

    assert [log.uri for log in merged[0].logs] == ["https://pod", "https://old"]


def test_external_resources_new_copied():
    latest = [resource(3, external_id="job-3")]

    merged = merge_external_resources([], latest)

    assert merged == latest
    assert merged[0] is not latest[0]


def test_external_resources_inputs_unchanged():
    stored = [resource(0, external_id="job-1", phase=TaskPhase.RUNNING)]
    latest = [resource(0, external_id="job-2", phase=TaskPhase.SUCCEEDED)]
    stored_before = [copy_of(item) for item in stored]
    latest_before = [copy_of(item) for item in latest]

    merge_external_resources(stored, latest)

    assert stored == stored_before
    assert latest == latest_before
