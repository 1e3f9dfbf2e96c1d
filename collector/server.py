"""The collector's HTTP front end: a Starlette app under uvicorn ("parse, call, format").

Routes:

- ``POST /v1/windows``: the body is one sync message. 200 ``stored`` / ``duplicate`` /
  ``part-stored``; 401 authentication (unknown or removed device, bad signature); 400
  malformed or truncated; 413 oversized; 422 unsupported version; 503 when the store
  fails (the device retries). The answer is JSON ``{"status", "detail"}`` (and
  ``"reason"`` for a refusal).
- ``GET /metrics``: Prometheus text (:mod:`collector.metrics`).
- ``GET /healthz``: ``{"status": "ok"}`` while the process serves.

The body limit holds before the body is read: a ``Content-Length`` over it is refused
at once, and a chunked body is read only up to the limit. Ingest touches the database,
so it runs in Starlette's thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.errors import FleetStoreError, MessageRejected
from collector.ingest import Ingestor
from collector.metrics import CollectorMetrics
from collector.stores import FleetRetention, FleetStore, open_store
from edge_runtime.errors import ConfigError
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES

if TYPE_CHECKING:  # paho-mqtt is imported only when a broker is given
    from collector.mqtt_ingest import MqttSettings

__all__ = ["MEDIA_TYPE", "ServerConfig", "create_app", "serve"]

MEDIA_TYPE = "application/vnd.edge-runtime.sync"
_log = logging.getLogger("collector.server")
_FOLD_INTERVAL_SECONDS = 5.0  # how soon base buckets held in memory are written when ingest goes quiet


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How ``edge-runtime collector serve`` runs.

    Parameters
    ----------
    store_url : str
        The fleet store (``sqlite:///fleet.db``, ``postgresql://...``).
    host, port : str, int
        Where to listen (loopback by default: put TLS or a proxy in front for a fleet).
    tls_cert, tls_key : Path or None
        A PEM certificate chain and its key: serve HTTPS. Both or neither.
    max_message_bytes : int
        The largest body accepted.
    retention : FleetRetention or None
        What the store keeps, enforced at start and every ``retention_interval_seconds``
        (None: every window; stale parts of split windows are dropped all the same).
    mqtt : MqttSettings or None
        Also subscribe to the devices' MQTT topic on this broker.
    """

    store_url: str
    host: str = "127.0.0.1"
    port: int = 8750
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    retention: FleetRetention | None = None
    retention_interval_seconds: float = 300.0
    mqtt: MqttSettings | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"The 'port' parameter of ServerConfig must be an int in [0, 65535]. "
                              f"Got {self.port!r} instead.")
        if not self.retention_interval_seconds > 0:
            raise ConfigError(f"The 'retention_interval_seconds' parameter of ServerConfig must be a number in "
                              f"(0, inf). Got {self.retention_interval_seconds!r} instead.")


def _answer(status: str, detail: str, code: int, **extra: object) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail, **extra}, status_code=code)


def create_app(store: FleetStore, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               retention: FleetRetention | None = None, retention_interval_seconds: float = 300.0,
               mqtt: MqttSettings | None = None, clock: Callable[[], float] = time.time) -> Starlette:
    """The ASGI app over an open store (the caller closes the store).

    Retention runs at start and every ``retention_interval_seconds``; without a policy,
    the windows are all kept and only parts whose other parts never came are dropped.
    With ``mqtt``, a subscriber feeds the same ingest from the broker while the app runs.
    """
    policy = retention if retention is not None else FleetRetention()
    ingestor = Ingestor(store, max_message_bytes=max_message_bytes, clock=clock)
    metrics = CollectorMetrics(store, clock=clock)

    def refuse(exc: MessageRejected) -> JSONResponse:
        metrics.rejected(exc.reason)
        return _answer("rejected", exc.detail, exc.http_status, reason=exc.reason)

    async def post_window(request: Request) -> Response:
        declared = request.headers.get("content-length")
        try:
            if declared is not None and int(declared) > max_message_bytes:
                return refuse(await run_in_threadpool(ingestor.reject_oversized, int(declared)))
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_message_bytes:
                    return refuse(await run_in_threadpool(ingestor.reject_oversized, len(body)))
            result = await run_in_threadpool(ingestor.ingest, bytes(body))
        except MessageRejected as exc:
            return refuse(exc)
        except ValueError:  # a Content-Length that is not a number
            return _answer("rejected", f"Content-Length {declared!r} is not a number", 400, reason="malformed")
        except FleetStoreError as exc:
            _log.error("store failed: %s", exc)
            return _answer("error", f"the collector's store failed: {exc}", 503)
        metrics.ingested(result.status)
        return _answer(result.status, result.detail, 200, model_known=result.model_known)

    async def get_metrics(request: Request) -> Response:
        try:
            body, content_type = await run_in_threadpool(metrics.exposition)
        except FleetStoreError as exc:
            return Response(f"# store failed: {exc}\n", status_code=503, media_type="text/plain")
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def enforce_retention(policy: FleetRetention) -> None:
        while True:
            try:
                deleted = await run_in_threadpool(lambda: store.enforce_retention(policy, now=clock()))
                if deleted:
                    _log.info("retention deleted %d windows", deleted)
            except FleetStoreError as exc:  # next round may succeed; the server keeps serving
                _log.error("retention failed: %s", exc)
            await asyncio.sleep(retention_interval_seconds)

    async def fold_buckets() -> None:
        # Ingest writes the base buckets once a second under load; this writes what a
        # quiet spell leaves held in memory.
        while True:
            await asyncio.sleep(_FOLD_INTERVAL_SECONDS)
            if ingestor.buckets.pending:
                await run_in_threadpool(ingestor.buckets.flush)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(enforce_retention(policy))
        folding = asyncio.create_task(fold_buckets())
        subscriber = None
        if mqtt is not None:
            from collector.mqtt_ingest import MqttSubscriber

            def handle(data: bytes, device_id: str) -> None:
                try:
                    result = ingestor.ingest(data)
                except MessageRejected as exc:  # counted in the store by ingest; acknowledged by the subscriber
                    metrics.rejected(exc.reason)
                    raise
                metrics.ingested(result.status)

            def refused_by_topic(reason: str, topic_device: str | None) -> None:
                # The topic is anyone's word: counted without a device, as ingest does before a signature.
                store.count_rejection(reason)
                metrics.rejected(reason)

            subscriber = MqttSubscriber.from_settings(mqtt, handle, rejections=(MessageRejected,),
                                                      on_rejection=refused_by_topic,
                                                      max_message_bytes=max_message_bytes)
            subscriber.start()
        try:
            yield
        finally:
            if subscriber is not None:
                await run_in_threadpool(subscriber.stop)
            for background in (task, folding):
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await run_in_threadpool(ingestor.close)  # the base buckets still held in memory

    return Starlette(routes=[
        Route("/v1/windows", post_window, methods=["POST"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ], lifespan=lifespan)


def serve(config: ServerConfig, *, announce: Callable[[str], None] | None = None) -> None:
    """Open the store and serve until interrupted (SIGINT/SIGTERM); the store is closed after."""
    store = open_store(config.store_url)
    try:
        app = create_app(store, max_message_bytes=config.max_message_bytes, retention=config.retention,
                         retention_interval_seconds=config.retention_interval_seconds, mqtt=config.mqtt)
        scheme = "https" if config.tls_cert is not None else "http"
        if config.tls_cert is not None:
            _check_tls_files(config.tls_cert, config.tls_key)
        # Bound here, so a port in use is one clear error, not uvicorn's log line and exit 3.
        listener = _listen(config.host, config.port)
        if announce is not None:
            announce(f"collector serving {scheme}://{config.host}:{config.port}/v1/windows (store {store.url})")
            if config.mqtt is not None:
                announce(f"collector subscribing to {config.mqtt.topic} on {config.mqtt.safe_url}")
        server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None))
        with listener:
            server.run(sockets=[listener])
    finally:
        store.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ConfigError naming them when it cannot be had."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(info[0], socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(info[4])
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return listener


def _check_tls_files(cert: Path, key: Path | None) -> None:
    """Load the certificate and key once here, so a bad file is named (ssl's own error names none)."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key) if key else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot use the TLS certificate '{cert}'" + (f" with key '{key}'" if key else "")
                          + f": {getattr(exc, 'reason', None) or exc}") from exc
