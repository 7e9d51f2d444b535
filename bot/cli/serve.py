"""``acr-bot serve``: the production HTTP server (uvicorn) for the webhook, health and the Slack endpoint."""

from __future__ import annotations

import gc
import logging
import signal
import socket
from types import FrameType

import click

from bot.cli.common import command_store, settings, setup_logging
from bot.storage.urls import redact
from metrics.errors import UserError

log = logging.getLogger("acr_bot.serve")

# How long a shutdown waits for requests in flight before giving up on them (a request whose batch is being
# stored still finishes storing: the write runs in a worker thread that is never abandoned).
GRACEFUL_SHUTDOWN_SECONDS = 25
YOUNG_COLLECTION_OBJECTS = 10_000  # the garbage collector's young-generation threshold (see serve)


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on [default: HOST, 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on; 0 picks a free one [default: PORT, 3000].",
)
def serve(host: str | None, port: int | None) -> None:
    """Serve POST /webhooks/interactions, GET /healthz and the Slack endpoint until SIGTERM or Ctrl-C."""
    import uvicorn

    from bot.clock import SystemClock
    from bot.http.app import build_app
    from bot.http.server import server_config
    from bot.process_memory import MemoryKeeper, limit_sqlite_cache
    from bot.scheduler.manage import ScheduleManager
    from bot.scheduler.service import scheduler_lifespan, server_scheduler
    from bot.slack.app import build_slack, build_web_client

    config = settings()
    setup_logging(config)
    memory = MemoryKeeper()  # before the server's threads start: few malloc arenas, free memory trimmed
    limit_sqlite_cache(config.sqlite_cache_mib)  # all connections' page caches together, not each one's
    host = config.host if host is None else host
    port = config.port if port is None else port
    listener = _listen(host, port)
    store = command_store(create=True, announce=log.warning)
    try:
        client = build_web_client(config)  # the Web API, for the listeners and the scheduler's posts alike
        scheduler = server_scheduler(config, store, client)  # digests and alerts, started with the app
        # /acr subscribe ... & co. from Slack, telling the running scheduler when a subscription changes
        schedules = ScheduleManager(store, config.zone, SystemClock(), scheduler.request_sync if scheduler else None)
        slack = build_slack(config, store, schedules=schedules, client=client)  # POST /slack/events
        lifespans = [scheduler_lifespan(scheduler)] if scheduler else []
        app = build_app(config, store, extra_routes=slack.routes, lifespans=lifespans)
        server = uvicorn.Server(
            server_config(  # uvicorn's Config with the HTTP_* limits against slow clients
                app,
                config,
                log_config=None,  # keep the bot's logging set-up
                log_level=config.log_level.lower(),
                lifespan="on",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                server_header=False,
            )
        )
        bound_host, bound_port = listener.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        log.info("listening on http://%s:%d (database %s)", shown, bound_port, redact(config.database_url))
        if app.state.webhook_enabled:
            log.info("webhook enabled: POST /webhooks/interactions (signed with WEBHOOK_SECRET)")
        else:
            log.warning("webhook disabled: WEBHOOK_SECRET is not set, POST /webhooks/interactions answers 503")
        memory.start()
        # What is loaded by now (modules, the app, the store) lives as long as the process: frozen, the garbage
        # collector's full collections stop re-scanning it. They ran ~100 ms each, stopping every thread, and
        # took 1.2 s of each 12 s of bench/webhook.py's batches (0.3 s frozen; 5,618 -> 6,751 contacts/s, load 5).
        gc.collect()
        gc.freeze()
        # A webhook batch holds a few thousand young objects at once (a dict and a row a record). At the default
        # threshold (700 more than freed) the collector walked them 2-3 times a batch of 500 and walked them again
        # once promoted: 62 collections, 17 ms of a server's ~0.8 s of CPU in bench/webhook.py's two-server
        # PostgreSQL batches. A batch's objects are freed when it is answered, so at 10,000 (counted net of frees,
        # as the default) the collector runs about once a run (3 ms); cyclic garbage waits that much longer.
        gc.set_threshold(YOUNG_COLLECTION_OBJECTS, *gc.get_threshold()[1:])
        with _QuietSignals():
            server.run(sockets=[listener])
    finally:
        memory.stop()
        listener.close()
    if not server.started:
        raise UserError("the server did not start; see the log above")
    log.info("stopped cleanly")


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves: a clear error when the port is taken, and port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and without it
    # every response waits ~40 ms for a delayed ACK (Nagle).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as problem:
        listener.close()
        raise UserError(f"cannot listen on {host}:{port}: {problem.strerror or problem}") from None
    listener.set_inheritable(True)
    return listener


class _QuietSignals:
    """After a graceful shutdown uvicorn re-raises the signal that caused it, which under the default handlers
    would kill the process (SIGTERM) or raise KeyboardInterrupt (SIGINT) before the store is closed. While the
    server runs, those handlers are replaced by one that only logs, so the process closes the store and exits 0.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> None:
        self._previous = {sig: signal.signal(sig, self._note) for sig in self._SIGNALS}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @staticmethod
    def _note(sig: int, frame: FrameType | None) -> None:
        log.info("%s handled: shut down gracefully", signal.Signals(sig).name)
