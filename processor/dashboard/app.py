"""The dashboard's web application: pages, JSON API and server-sent events over a StateCache."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import AsyncIterator, Optional

import anyio
from google.protobuf import json_format
from google.protobuf.message import Message
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from processor.dashboard.cache import ExecutionFilter, ExecutionSnapshot, StateCache
from processor.dashboard.follower import StateFollower
from processor.fold.phases import WorkflowPhase
from processor.ids import InvalidIdError, parse_execution_key

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Seconds between two checks of the cache for changes by each event stream;
# also the shortest time between two change events sent to one client.
EVENT_POLL_SECONDS = 0.5

# A change event lists at most this many execution keys. With more, it sets
# reset, and the client reloads everything it shows.
MAX_KEYS_PER_EVENT = 500

# Seconds between keep-alive comments on an idle event stream.
EVENT_PING_SECONDS = 15

WORKFLOW_PHASE_NAMES = frozenset(WorkflowPhase.Phase.keys())


def _static_version() -> str:
    """Return a digest of the static files, appended to their URLs so browsers fetch changed files."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def _message_json(message: Optional[Message]) -> Optional[dict]:
    return None if message is None else json_format.MessageToDict(message)


def _int_parameter(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"query parameter {name}={text!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise HTTPException(400, f"query parameter {name}={value} is outside {minimum}..{maximum}")
    return value


def _phase_parameter(request: Request) -> frozenset[str]:
    """Read ``phase``, which may repeat and may hold comma-separated names."""
    phases = set()
    for value in request.query_params.getlist("phase"):
        phases.update(part.strip().upper() for part in value.split(",") if part.strip())
    unknown = sorted(phases - WORKFLOW_PHASE_NAMES)
    if unknown:
        raise HTTPException(
            400, f"unknown phase {', '.join(unknown)}: use one of {', '.join(sorted(WORKFLOW_PHASE_NAMES))}"
        )
    return frozenset(phases)


def _checked_execution_key(key: str) -> str:
    try:
        parse_execution_key(key)
    except InvalidIdError as error:
        raise HTTPException(404, f"{error}") from None
    return key


def _child_sort_key(item: tuple[str, Message], closure_of) -> tuple:
    key, state = item
    closure = closure_of(state)
    started = closure.started_at.ToNanoseconds() if closure.HasField("started_at") else 0
    created = closure.created_at.ToNanoseconds() if closure.HasField("created_at") else 0
    return (created or started, key)


def execution_json(snapshot: ExecutionSnapshot, sequence: int) -> dict:
    """Render one execution's records as protobuf JSON, nodes and tasks in order of creation."""
    prefix = snapshot.key + "/"
    nodes = sorted(snapshot.nodes.items(), key=lambda item: _child_sort_key(item, lambda s: s.node_execution.closure))
    tasks = sorted(snapshot.tasks.items(), key=lambda item: _child_sort_key(item, lambda s: s.task_execution.closure))

    node_documents = []
    for key, state in nodes:
        node_documents.append({"key": key, "node_id": key[len(prefix) :], "state": _message_json(state)})

    task_documents = []
    for key, state in tasks:
        node_id, task_name, retry_attempt = key[len(prefix) :].rsplit("/", 2)
        task_documents.append(
            {
                "key": key,
                "node_id": node_id,
                "task_name": task_name,
                "retry_attempt": int(retry_attempt) if retry_attempt.isdigit() else retry_attempt,
                "state": _message_json(state),
            }
        )

    return {
        "key": snapshot.key,
        "sequence": sequence,
        "workflow": _message_json(snapshot.workflow),
        "summary": _message_json(snapshot.summary),
        "nodes": node_documents,
        "tasks": task_documents,
    }


class DashboardRoutes:
    """Request handlers bound to one cache."""

    def __init__(self, cache: StateCache, templates: Jinja2Templates, title: str) -> None:
        self.cache = cache
        self.templates = templates
        self.title = title

    async def list_page(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "executions.html", {"title": self.title})

    async def execution_page(self, request: Request) -> Response:
        key = _checked_execution_key(request.path_params["key"])
        return self.templates.TemplateResponse(request, "execution.html", {"title": self.title, "key": key})

    async def list_executions(self, request: Request) -> Response:
        conditions = ExecutionFilter(
            project=request.query_params.get("project", "").strip(),
            domain=request.query_params.get("domain", "").strip(),
            phases=_phase_parameter(request),
            query=request.query_params.get("q", "").strip(),
        )
        limit = _int_parameter(request, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = _int_parameter(request, "offset", 0, 0, 2**31)

        status = self.cache.status()
        page = self.cache.list_executions(conditions, limit=limit, offset=offset)
        return JSONResponse(
            {
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
                "items": [row.to_json() for row in page.rows],
                "facets": self.cache.facets(),
                "sequence": status.sequence,
                "ready": status.ready,
            }
        )

    async def get_execution(self, request: Request) -> Response:
        key = _checked_execution_key(request.path_params["key"])
        sequence = self.cache.sequence
        snapshot = self.cache.execution(key)
        if snapshot is None:
            return _error(404, f"execution {key} not found in the state topics")
        return JSONResponse(execution_json(snapshot, sequence))

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.cache.status().to_json())

    async def events(self, request: Request) -> Response:
        """Stream ``change`` events naming changed executions, and ``status`` events when loading or errors change.

        A client resumes after ``Last-Event-ID`` or ``since`` when given; a
        sequence the cache no longer covers gets a change event with
        ``reset`` true.
        """
        since_text = request.headers.get("last-event-id") or request.query_params.get("since")
        if since_text:
            try:
                since = int(since_text)
            except ValueError:
                return _error(400, f"event id {since_text!r} is not a whole number")
        else:
            since = self.cache.sequence
        return EventSourceResponse(self._event_stream(since), ping=EVENT_PING_SECONDS)

    async def _event_stream(self, sequence: int) -> AsyncIterator[ServerSentEvent]:
        last_status = None
        while True:
            status = self.cache.status()
            shown_status = {"ready": status.ready, "error": status.error}
            if shown_status != last_status:
                last_status = shown_status
                yield ServerSentEvent(event="status", data=json.dumps(shown_status))

            changes = self.cache.changes_since(sequence)
            if changes.sequence != sequence:
                reset = changes.reset or len(changes.execution_keys) > MAX_KEYS_PER_EVENT
                document = {
                    "sequence": changes.sequence,
                    "executions": [] if reset else changes.execution_keys,
                    "reset": reset,
                }
                yield ServerSentEvent(event="change", data=json.dumps(document), id=str(changes.sequence))
                sequence = changes.sequence
            await asyncio.sleep(EVENT_POLL_SECONDS)


async def _http_error(request: Request, error: Exception) -> Response:
    """Return HTTP errors under /api/ with a JSON body ``{"error": ...}``, and others as plain text."""
    assert isinstance(error, HTTPException)
    if request.url.path.startswith("/api/"):
        return _error(error.status_code, str(error.detail))
    return Response(str(error.detail), status_code=error.status_code, media_type="text/plain")


def create_app(cache: StateCache, follower: Optional[StateFollower] = None, title: str = "Flyte executions") -> Starlette:
    """Build the web application; it starts ``follower`` at start-up and stops it at shutdown."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    static_version = _static_version()
    templates.env.globals["static_url"] = lambda name: f"/static/{name}?v={static_version}"
    routes = DashboardRoutes(cache, templates, title)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
        try:
            yield
        finally:
            if follower is not None:
                await anyio.to_thread.run_sync(follower.stop)

    return Starlette(
        routes=[
            Route("/", routes.list_page),
            Route("/executions/{key:path}", routes.execution_page),
            Route("/api/executions", routes.list_executions),
            Route("/api/executions/{key:path}", routes.get_execution),
            Route("/api/status", routes.status),
            Route("/api/events", routes.events),
            Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
