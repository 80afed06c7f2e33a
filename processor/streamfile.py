"""Reading event stream files: JSON Lines of ``{"kind": ..., "event": <protobuf JSON>}``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from google.protobuf import json_format

from processor.events import EventKind, ExecutionEvent, UndecodableEventError, decoded_event


class StreamFileError(ValueError):
    """A line of a stream file that is not a valid event; the message names file and line."""


@dataclass(frozen=True)
class StreamLine:
    source: str
    line_number: int
    event: ExecutionEvent


def parse_line(text: str, source: str, line_number: int) -> ExecutionEvent:
    where = f"{source}:{line_number}"
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise StreamFileError(f"{where}: invalid JSON: {error}") from None

    if not isinstance(document, dict) or "kind" not in document or "event" not in document:
        raise StreamFileError(f'{where}: expected an object with "kind" and "event"')
    if not isinstance(document["event"], dict):
        raise StreamFileError(f'{where}: "event" must be an object, got {type(document["event"]).__name__}')

    try:
        kind = EventKind(document["kind"])
    except ValueError:
        raise StreamFileError(f"{where}: unknown kind {document['kind']!r}: expected workflow, node or task") from None

    message = kind.message_class()
    try:
        json_format.ParseDict(document["event"], message)
    except (json_format.ParseError, RecursionError) as error:
        raise StreamFileError(f"{where}: invalid {message.DESCRIPTOR.full_name}: {error}") from None

    try:
        return decoded_event(kind, message)
    except UndecodableEventError as error:
        raise StreamFileError(f"{where}: {error.detail}") from None


def _read_lines(handle: BinaryIO, source: str) -> Iterator[StreamLine | StreamFileError]:
    for line_number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield StreamFileError(f"{source}:{line_number}: line is not valid UTF-8: {error}")
            continue
        if not text.strip():
            continue
        try:
            yield StreamLine(source, line_number, parse_line(text, source, line_number))
        except StreamFileError as error:
            yield error


def read_stream_lenient(path: str) -> Iterator[StreamLine | StreamFileError]:
    """Yield each line of a stream file as an event, or as the error that names its file and line.

    ``-`` reads standard input.
    """
    if path == "-":
        yield from _read_lines(sys.stdin.buffer, "<stdin>")
        return
    with Path(path).open("rb") as handle:
        yield from _read_lines(handle, path)


def read_stream(path: str) -> Iterator[StreamLine]:
    """Yield the events of one stream file; raises StreamFileError at the first bad line."""
    for item in read_stream_lenient(path):
        if isinstance(item, StreamFileError):
            raise item
        yield item
