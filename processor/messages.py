"""This project's protobuf messages, generated from protos/ on first import when missing."""

from __future__ import annotations

import importlib.util
import sys

from processor import protobuf_build

protobuf_build.ensure_built()


def _load_generated(module_name: str, relative_path: str):
    path = protobuf_build.OUTPUT_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load generated module {module_name} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


state_pb2 = sys.modules.get("flyte_state.v1.state_pb2") or _load_generated(
    "flyte_state.v1.state_pb2", "flyte_state/v1/state_pb2.py"
)

WorkflowExecutionState = state_pb2.WorkflowExecutionState
NodeExecutionState = state_pb2.NodeExecutionState
TaskExecutionState = state_pb2.TaskExecutionState
ExecutionSummary = state_pb2.ExecutionSummary
LedgerEntry = state_pb2.LedgerEntry
OwnershipChange = state_pb2.OwnershipChange
SubtaskSource = state_pb2.SubtaskSource
