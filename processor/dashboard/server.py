"""Running the dashboard with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from processor.config import Settings
from processor.dashboard.app import create_app
from processor.dashboard.cache import StateCache
from processor.dashboard.follower import StateFollower

log = logging.getLogger(__name__)

# Seconds uvicorn waits for open connections, event streams included, at shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run_dashboard(settings: Settings, host: str, port: int) -> int:
    """Serve the dashboard until SIGTERM or SIGINT; return the exit status."""
    cache = StateCache()
    follower = StateFollower(settings, cache)
    app = create_app(cache, follower)
    debug = settings.log_level == "DEBUG"
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # The command configured logging already; uvicorn's loggers propagate to it.
        log_config=None,
        log_level=settings.log_level.lower(),
        # Every open page polls the API, so request lines are logged at DEBUG only.
        access_log=debug,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    log.info(
        "dashboard on http://%s:%d reading %s from %s",
        host,
        port,
        ", ".join(settings.topics.states),
        settings.bootstrap_servers,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn sets started only when it could bind and start the application.
    return 0 if server.started else 1
