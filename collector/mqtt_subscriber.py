"""Ingest from an MQTT broker: the collector subscribes to the devices' topic (paho-mqtt).

Devices publish each message with QoS 1 to ``edge-runtime/<device_id>/windows``; the
collector subscribes to ``edge-runtime/+/windows`` with QoS 1 and hands every payload
to the same :class:`~collector.ingest.Ingestor` as an HTTP POST. Nothing is answered
back: a refusal is counted, as over HTTP, and acknowledged so that the broker does not
deliver it again.

The session is persistent (``clean_session=False`` under a fixed client id), and a
message is acknowledged only once it is stored or refused for good: while the store is
down, ingest is retried with backoff and the broker keeps what is not acknowledged (and
delivers it again after a reconnection). Run one client id per collector process; for
several collectors sharing the load, subscribe each to a shared subscription
(``$share/collectors/edge-runtime/+/windows``). Only this module imports paho-mqtt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.errors import FleetStoreError, MessageRejected
from collector.ingest import Ingestor
from edge_runtime.errors import ConfigError

__all__ = ["DEFAULT_TOPIC", "MqttSettings", "MqttSubscriber"]

DEFAULT_TOPIC = "edge-runtime/+/windows"
_log = logging.getLogger("collector.mqtt")


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """Where and how the collector subscribes.

    Parameters
    ----------
    url : str
        ``mqtt://[user[:password]@]host[:port]`` (1883 by default) or ``mqtts://...`` (TLS, 8883).
    topic : str
        The subscription (default ``edge-runtime/+/windows``).
    client_id : str
        The persistent session's id: one per collector process.
    ca_file : Path or None
        CA bundle for ``mqtts://`` (default: the system's).
    """

    url: str
    topic: str = DEFAULT_TOPIC
    client_id: str = "edge-runtime-collector"
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"MQTT URL '{self.url}' is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"MQTT URL '{self.url}' has a bad port: {exc}") from exc


class MqttSubscriber:
    """A background MQTT client feeding an :class:`Ingestor`.

    Parameters
    ----------
    ingestor : Ingestor
        Where each payload goes.
    settings : MqttSettings
    on_ingested, on_rejected : callable, optional
        Told each outcome (``"stored"``...) or refusal reason, for the metrics.
    """

    def __init__(self, ingestor: Ingestor, settings: MqttSettings, *,
                 on_ingested: Callable[[str], None] | None = None,
                 on_rejected: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._ingestor = ingestor
        self._on_ingested = on_ingested or (lambda outcome: None)
        self._on_rejected = on_rejected or (lambda reason: None)
        self._stopped = threading.Event()
        self.subscribed = threading.Event()
        parts = urlsplit(settings.url)
        self._host = parts.hostname or ""
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id, clean_session=False,
                             manual_ack=True)
        if parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password) if parts.password else None)
        if parts.scheme == "mqtts":
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._client = client

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and subscribe."""
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the background thread."""
        self._stopped.set()
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            _log.error("MQTT broker %s:%s refused the connection: %s", self._host, self._port, reason_code)
            return
        client.subscribe(self.settings.topic, qos=1)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        delay = 1.0
        while not self._stopped.is_set():
            try:
                result = self._ingestor.ingest(bytes(message.payload))
            except MessageRejected as exc:
                _log.warning("refused a message on %s: %s", message.topic, exc)
                self._on_rejected(exc.reason)
                break
            except FleetStoreError as exc:
                # Not acknowledged until stored: the broker keeps it meanwhile.
                _log.error("store failed, retrying in %.0f s: %s", delay, exc)
                self._stopped.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._on_ingested(result.status)
            break
        else:
            return  # stopping: left unacknowledged, so the broker delivers it again
        client.ack(message.mid, message.qos)
