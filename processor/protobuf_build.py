"""Build the Python modules of this project's .proto files under protos/.

The flyteidl wheel ships generated Python modules but no .proto files, so the
imports of our protos are resolved from a descriptor set built out of the
installed flyteidl modules and handed to protoc with ``--descriptor_set_in``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_ROOT = Path(__file__).resolve().parent / "_generated"

# Python modules whose descriptors cover every import of our .proto files.
DEPENDENCY_MODULES = (
    "flyteidl.admin.execution_pb2",
    "flyteidl.admin.node_execution_pb2",
    "flyteidl.admin.task_execution_pb2",
    "flyteidl.core.identifier_pb2",
    "flyteidl.core.catalog_pb2",
    "flyteidl.core.execution_pb2",
    "flyteidl.core.literals_pb2",
    "google.protobuf.timestamp_pb2",
)


def collect_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Return the transitive closure of the dependency modules' files, imports first."""
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor: FileDescriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        file_proto = descriptor_set.file.add()
        file_descriptor.CopyToProto(file_proto)

    for module_name in DEPENDENCY_MODULES:
        add(importlib.import_module(module_name).DESCRIPTOR)
    return descriptor_set


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def is_stale() -> bool:
    """Tell whether a generated module is missing or older than its .proto file."""
    for proto in proto_files():
        generated = OUTPUT_ROOT / proto.relative_to(PROTO_ROOT).with_name(proto.stem + "_pb2.py")
        if not generated.exists() or generated.stat().st_mtime < proto.stat().st_mtime:
            return True
    return False


def build() -> None:
    """Run protoc (from grpcio-tools) over protos/ into processor/_generated/.

    Raises RuntimeError with protoc's exit code when generation fails.
    """
    from grpc_tools import protoc

    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        descriptor_path = os.path.join(scratch, "dependencies.pb")
        with open(descriptor_path, "wb") as handle:
            handle.write(collect_descriptor_set().SerializeToString())

        arguments = [
            "protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--descriptor_set_in={descriptor_path}",
            f"--python_out={OUTPUT_ROOT}",
            *[str(proto.relative_to(PROTO_ROOT)) for proto in proto_files()],
        ]
        exit_code = protoc.main(arguments)
    if exit_code != 0:
        raise RuntimeError(f"protoc failed with exit code {exit_code} on {PROTO_ROOT}")
    log.info("generated protobuf modules in %s", OUTPUT_ROOT)


def ensure_built() -> None:
    if is_stale():
        build()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build()
    sys.exit(0)
