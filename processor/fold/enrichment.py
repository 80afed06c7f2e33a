"""Enrichment of state records from FlyteAdmin's version 2 CloudEvents.

A version 2 CloudEvent wraps the flyteidl event with fields that FlyteAdmin
1.16 reads from its database when it publishes the event. They are the
execution's launch plan id, principal, labels, reference execution and
artifact ids in ``flyteidl.event.CloudEventWorkflowExecution`` and
``CloudEventNodeExecution``, and only the labels in
``CloudEventTaskExecution``. They describe the execution rather than the
event, so they are applied whatever the event's fold outcome.

Each step is an assignment of a value that every event of the execution
carries alike, or a set union, so applying an enrichment twice or in another
order gives the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from flyteidl.core import artifact_id_pb2, identifier_pb2

from processor.messages import NodeExecutionState, WorkflowExecutionState


@dataclass(frozen=True)
class Enrichment:
    """The fields of a version 2 CloudEvent that the state records keep."""

    launch_plan_id: Optional[identifier_pb2.Identifier] = None
    principal: str = ""
    # (name, value) pairs of the execution's labels.
    labels: tuple[tuple[str, str], ...] = ()
    reference_execution: Optional[identifier_pb2.WorkflowExecutionIdentifier] = None
    artifact_ids: tuple[artifact_id_pb2.ArtifactID, ...] = ()

    @property
    def is_empty(self) -> bool:
        return (
            self.launch_plan_id is None
            and not self.principal
            and not self.labels
            and self.reference_execution is None
            and not self.artifact_ids
        )


def enrich_workflow(state: WorkflowExecutionState, enrichment: Enrichment) -> None:
    """Write the execution's enrichment into ``execution.spec`` of the record, in place.

    NOTE: FlyteAdmin reads launch plan, principal and labels from the
    execution's spec, which does not change, so all events of one execution
    carry the same values. Were two to differ, the one applied last would win.
    """
    spec = state.execution.spec
    if enrichment.launch_plan_id is not None:
        spec.launch_plan.CopyFrom(enrichment.launch_plan_id)
    if enrichment.principal:
        spec.metadata.principal = enrichment.principal
    for name, value in enrichment.labels:
        spec.labels.values[name] = value
    if enrichment.reference_execution is not None:
        spec.metadata.reference_execution.CopyFrom(enrichment.reference_execution)
    if enrichment.artifact_ids:
        merged = merge_artifact_ids(spec.metadata.artifact_ids, enrichment.artifact_ids)
        del spec.metadata.artifact_ids[:]
        spec.metadata.artifact_ids.extend(merged)


def enrich_node(state: NodeExecutionState, enrichment: Enrichment) -> None:
    """Add the artifact ids of a node's CloudEvent to the node record, in place."""
    if enrichment.artifact_ids:
        merged = merge_artifact_ids(state.artifact_ids, enrichment.artifact_ids)
        del state.artifact_ids[:]
        state.artifact_ids.extend(merged)


def merge_artifact_ids(
    stored: Iterable[artifact_id_pb2.ArtifactID], added: Iterable[artifact_id_pb2.ArtifactID]
) -> list[artifact_id_pb2.ArtifactID]:
    """Return the union of both lists without duplicates, sorted by project, domain, name and version."""
    by_bytes = {}
    for artifact_id in [*stored, *added]:
        copy = artifact_id_pb2.ArtifactID()
        copy.CopyFrom(artifact_id)
        by_bytes[copy.SerializeToString(deterministic=True)] = copy
    ordered = sorted(by_bytes.items(), key=lambda item: _sort_key(item[1], item[0]))
    return [artifact_id for _, artifact_id in ordered]


def _sort_key(artifact_id: artifact_id_pb2.ArtifactID, serialized: bytes) -> tuple:
    key = artifact_id.artifact_key
    return (key.project, key.domain, key.name, artifact_id.version, serialized)
