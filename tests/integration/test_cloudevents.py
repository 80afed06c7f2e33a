"""The worker folds FlyteAdmin-style CloudEvents into the same state as the binary topics.

Each shared stream is encoded as FlyteAdmin's publisher would send it (the
first event of each task attempt left out, keyed by CloudEvent id), then
shuffled and partly duplicated, and produced to the CloudEvents topic. Each
test folds the stream under an execution name of its own, so that one
worker serves every test of the module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import uuid
from collections import defaultdict
from typing import Iterator

import pytest
from confluent_kafka import Producer
from flyteidl.core import artifact_id_pb2, identifier_pb2
from google.protobuf import json_format

from processor import expectations
from processor.cloudevents import FlyteAdminStyleEncoder, encode_cloud_event, sarama_partition
from processor.config import Settings
from processor.events import EventKind, ExecutionEvent, keyed_event
from processor.fold.enrichment import Enrichment
from processor.fold.execution import RecordKind
from processor.fold.phases import TaskPhase
from processor.kafka_clients import producer_config
from processor.routing import DEAD_LETTER_REASON, DEAD_LETTER_TOPIC
from processor.state_reader import StateReader
from processor.streamfile import read_stream
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from support import STATE_TIMEOUT_SECONDS, isolated_settings, read_topic, run_cli, stream_files, wait_for_facts

pytestmark = pytest.mark.integration

FORMATS = {"cloudevents-v1": 1, "cloudevents-v2": 2}


@pytest.fixture(scope="module")
def ce_settings(kafka_bootstrap: str, tmp_path_factory) -> Settings:
    settings = isolated_settings(kafka_bootstrap, tmp_path_factory.mktemp("state"))
    topics = dataclasses.replace(settings.topics, cloudevents=f"{settings.app_id}.cloudevents")
    settings = settings.replace(topics=topics)
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def ce_worker(ce_settings: Settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    worker = WorkerProcess(ce_settings, log_path).start()
    yield worker
    exit_code = worker.stop()
    assert exit_code == 0, f"worker exited with {exit_code}:\n{worker.log_tail()}"


def renamed(event: ExecutionEvent, name: str) -> ExecutionEvent:
    """Return a copy of the event that belongs to the execution called ``name``."""
    message = type(event.message)()
    message.CopyFrom(event.message)
    if event.kind is EventKind.WORKFLOW:
        message.execution_id.name = name
    elif event.kind is EventKind.NODE:
        message.id.execution_id.name = name
    else:
        message.parent_node_execution_id.execution_id.name = name
    return keyed_event(event.kind, message)


def renamed_facts(expected: dict, old_key: str, new_key: str) -> dict:
    """Return the expected facts with every key of execution ``old_key`` moved to ``new_key``."""
    def moved(key: str) -> str:
        return new_key + key[len(old_key) :] if key.startswith(old_key) else key

    return {kind: {moved(key): facts for key, facts in entries.items()} for kind, entries in expected.items()}


def facts_without_first_task_events(expected: dict, events: list[ExecutionEvent]) -> dict:
    """Drop the facts that only the first event of a task attempt could make true.

    FlyteAdmin publishes no CloudEvent for that event. An attempt with no
    other event has no record, and its workflow's task_count is one lower.
    An attempt whose only RUNNING event was the first has no started_at and
    so no duration. The logs of the first event may be missing. The shared
    streams start every attempt with a QUEUED event without logs, so none of
    their facts is dropped.
    """
    first_events = {}
    later_events = defaultdict(list)
    for event in events:
        if event.kind is not EventKind.TASK:
            continue
        if event.entity_key in first_events:
            later_events[event.entity_key].append(event)
        else:
            first_events[event.entity_key] = event

    adjusted = copy.deepcopy(expected)
    task_facts = adjusted.get("task", {})
    for key in list(task_facts):
        first = first_events.get(key)
        if first is None:
            continue
        later = later_events[key]
        if not later:
            del task_facts[key]
            for workflow_facts in adjusted.get("workflow", {}).values():
                workflow_facts.pop("task_count", None)
            continue
        if not any(event.message.phase == TaskPhase.RUNNING for event in later):
            task_facts[key].pop("has_started_at", None)
            task_facts[key].pop("has_duration", None)
        if first.message.logs:
            task_facts[key].pop("log_count", None)
    return adjusted


def produce(settings: Settings, records) -> None:
    producer = Producer(producer_config(settings))
    topic = settings.topics.cloudevents
    for record in records:
        partition = sarama_partition(record.key, settings.partitions)
        producer.produce(topic, key=record.key, value=record.value, headers=record.headers, partition=partition)
    assert producer.flush(30) == 0


def stream_under_new_name(stream, suffix: str) -> tuple[list[ExecutionEvent], dict]:
    """Read a stream and its expected facts, moved to an execution name that no other test uses."""
    events = [line.event for line in read_stream(str(stream))]
    old_key = events[0].execution_key
    old_name = old_key.rsplit(":", 1)[1]
    new_name = f"{old_name[:10]}-{suffix}-{uuid.uuid4().hex[:6]}"
    events = [renamed(event, new_name) for event in events]
    expected = renamed_facts(expectations.load(stream.with_suffix(".expect.json")), old_key, events[0].execution_key)
    return events, expected


@pytest.mark.parametrize("event_format", list(FORMATS))
@pytest.mark.parametrize("stream", stream_files(), ids=lambda path: path.stem)
def test_shuffled_cloudevents_reach_expected_state(stream, event_format, ce_settings, ce_worker):
    events, expected = stream_under_new_name(stream, event_format[-2:])
    encoder = FlyteAdminStyleEncoder(FORMATS[event_format])
    records = [record for record in (encoder.encode(event) for event in events) if record is not None]

    rng = random.Random(f"{stream.stem}/{event_format}")
    delivered = records + rng.sample(records, k=len(records) // 3)
    rng.shuffle(delivered)
    produce(ce_settings, delivered)

    failures = wait_for_facts(ce_settings, facts_without_first_task_events(expected, events), ce_worker)

    assert failures == []


def test_publish_command_cloudevents_format(ce_settings, ce_worker, tmp_path):
    stream = stream_files()[0]
    events, expected = stream_under_new_name(stream, "cli")
    stream_file = tmp_path / "stream.jsonl"
    lines = [
        json.dumps({"kind": event.kind.value, "event": json_format.MessageToDict(event.message)}) for event in events
    ]
    stream_file.write_text("\n".join(lines) + "\n")

    result = run_cli(ce_settings, "publish", "--format", "cloudevents-v2", str(stream_file))

    assert result.returncode == 0, result.stderr
    task_attempts = len({event.entity_key for event in events if event.kind is EventKind.TASK})
    assert f"published {len(events) - task_attempts} events" in result.stderr
    assert wait_for_facts(ce_settings, facts_without_first_task_events(expected, events), ce_worker) == []


def test_v2_enrichment_reaches_workflow_and_node_records(ce_settings, ce_worker):
    events, _ = stream_under_new_name(stream_files()[0], "enrich")
    execution_key = events[0].execution_key
    launch_plan = identifier_pb2.Identifier(
        resource_type=identifier_pb2.LAUNCH_PLAN, project="flytesnacks", domain="development", name="wf.lp", version="7"
    )
    enrichment = Enrichment(launch_plan_id=launch_plan, principal="alice@example.com", labels=(("team", "ml"),))
    artifact = artifact_id_pb2.ArtifactID(artifact_key=artifact_id_pb2.ArtifactKey(name="model"), version="1")
    workflow_event = next(event for event in events if event.kind is EventKind.WORKFLOW)
    node_event = next(event for event in events if event.kind is EventKind.NODE)
    produce(
        ce_settings,
        [
            encode_cloud_event(workflow_event, 2, enrichment=enrichment),
            encode_cloud_event(node_event, 2, enrichment=Enrichment(artifact_ids=(artifact,))),
        ],
    )

    def enriched(records) -> bool:
        workflow = records[RecordKind.WORKFLOW].get(execution_key)
        node = records[RecordKind.NODE].get(node_event.entity_key)
        if workflow is None or node is None:
            return False
        return workflow.execution.spec.metadata.principal != "" and len(node.artifact_ids) > 0

    with StateReader(ce_settings) as reader:
        reader.wait_until(enriched, STATE_TIMEOUT_SECONDS)
        workflow = reader.records[RecordKind.WORKFLOW].get(execution_key)
        node = reader.records[RecordKind.NODE].get(node_event.entity_key)

    assert workflow is not None, f"no workflow record of {execution_key}:\n{ce_worker.log_tail()}"
    assert node is not None, f"no node record of {node_event.entity_key}"
    spec = workflow.execution.spec
    assert spec.launch_plan == launch_plan
    assert spec.metadata.principal == "alice@example.com"
    assert dict(spec.labels.values) == {"team": "ml"}
    assert list(node.artifact_ids) == [artifact]


def test_bad_cloudevents_dead_lettered(ce_settings, ce_worker):
    marker = uuid.uuid4().hex.encode()
    events, _ = stream_under_new_name(stream_files()[0], "bad")
    good = encode_cloud_event(events[0], 1)
    unknown_type = [
        (name, b"com.flyte.resource.cloudevents.ExecutionStart" if name == "ce_type" else value)
        for name, value in good.headers
    ]
    producer = Producer(producer_config(ce_settings))
    topic = ce_settings.topics.cloudevents
    producer.produce(topic, key=good.key, value=good.value, headers=[*unknown_type, ("trace", marker)])
    producer.produce(topic, key=good.key, value=b"{not json", headers=[*good.headers, ("trace", marker)])
    assert producer.flush(30) == 0

    dead_letters = [
        message
        for message in read_topic(ce_settings, ce_settings.topics.dead_letter, minimum=2)
        if dict(message.headers() or []).get("trace") == marker
    ]
    reasons = sorted(dict(message.headers())[DEAD_LETTER_REASON] for message in dead_letters)

    assert reasons == [b"undecodable", b"unknown-ce-type"]
    assert all(dict(message.headers())[DEAD_LETTER_TOPIC] == topic.encode() for message in dead_letters)
    assert all(message.key() == good.key for message in dead_letters)
