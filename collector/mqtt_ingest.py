"""The collector's MQTT front end: subscribe to the devices' topics, hand each message to ingest.

The only collector module that imports paho-mqtt. A background thread keeps one MQTT 5
connection to the broker, subscribed with QoS 1 to ``edge-runtime/+/windows`` (the
``+`` level is the device id), and calls ``handle(message_bytes, device_id)`` for each
message, the way the HTTP server calls ingest for each POST.

What makes it lose nothing (``docs/sync-mqtt.md`` has the broker side):

- **A persistent session.** A fixed client id, ``clean_start`` off and a session expiry:
  while the collector is down or reconnecting, the broker queues the devices' messages
  for it, and delivers them when it is back.
- **Acknowledged after handling.** A message is acknowledged (PUBACK) only once
  ``handle`` returned or refused it. If ``handle`` fails otherwise (the store is
  down), the message stays unacknowledged, the subscriber drops the connection and
  comes back after a pause, and the broker delivers it again. QoS 1 is at least once:
  ``handle`` must take a message twice harmlessly (ingest's idempotency key does).
- **Refusals are counted, never answered.** A message ``handle`` refuses (it raises one
  of ``rejections``: a malformed message, a bad signature...), or one whose topic names
  another device than its header, is acknowledged, counted by reason and logged; the
  device has long had its PUBACK from the broker, so it is never told.

Examples
--------
>>> subscriber = MqttSubscriber("mqtt://127.0.0.1:1", lambda data, device: None)
>>> subscriber.topic, subscriber.client_id
('edge-runtime/+/windows', 'edge-runtime-collector')
>>> subscriber.device_of("edge-runtime/kiosk-1/windows")
'kiosk-1'
>>> MqttSubscriber("mqtt://127.0.0.1:1", print, topic="edge-runtime/#")
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: MQTT topic filter 'edge-runtime/#' must have one '+' level (the device id) and no '#'
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.errors import ConfigError, PayloadError, SyncError
from edge_runtime.sync.keys import check_device_id
from edge_runtime.sync.mqtt_transport import broker_tls_context, parse_mqtt_url
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES, read_message

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_TOPIC", "MqttSettings", "MqttSubscriber", "SubscriberStats"]

DEFAULT_TOPIC = "edge-runtime/+/windows"
DEFAULT_CLIENT_ID = "edge-runtime-collector"
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # seconds the broker keeps queueing for a collector that is away
_KEEPALIVE = 60
_LOOP_STEP = 0.2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """Where and how ``collector serve --mqtt`` subscribes (the arguments of :class:`MqttSubscriber`).

    Parameters
    ----------
    url : str
        ``mqtt://[user[:password]@]host[:1883]`` or ``mqtts://...[:8883]`` (TLS).
    topic : str
        The topic filter, its one ``+`` level the device id.
    client_id : str
        The persistent session's id: one per collector process.
    ca_file, cert_file, key_file : Path or None
        TLS (``mqtts://`` only): the broker's CA (default: the system's), and a client
        certificate and key for a broker that wants one.

    Raises
    ------
    ConfigError
        A bad URL or topic filter, or TLS files given for a plain ``mqtt://`` URL.

    Examples
    --------
    >>> MqttSettings(url="mqtt://127.0.0.1", topic="edge-runtime/#")
    Traceback (most recent call last):
    ...
    edge_runtime.errors.ConfigError: MQTT topic filter 'edge-runtime/#' must have one '+' level (the device id) and no '#'
    """

    url: str
    topic: str = DEFAULT_TOPIC
    client_id: str = DEFAULT_CLIENT_ID
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        address = parse_mqtt_url(self.url)
        _device_level(self.topic)
        if not address.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ConfigError(f"MQTT URL {address.safe_url!r} is not TLS: use mqtts:// with a CA or "
                              "certificate file")

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return parse_mqtt_url(self.url).safe_url


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberStats:
    """A snapshot of what the subscriber has seen since it was made.

    Attributes
    ----------
    received : int
        Messages delivered by the broker (a redelivered one counts again).
    handled : int
        Messages ``handle`` accepted.
    rejected : dict of str to int
        Messages refused, by reason (acknowledged: they will not come again).
    failures : int
        Messages ``handle`` failed on otherwise (left unacknowledged for the broker to resend).
    connections : int
        Successful connections (1 + reconnections).
    subscribed : bool
        Connected and subscribed right now.
    """

    received: int
    handled: int
    rejected: dict[str, int] = field(default_factory=dict)
    failures: int
    connections: int
    subscribed: bool


class _Refused(Exception):
    def __init__(self, reason: str, detail: str, device: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.device = device


class MqttSubscriber:
    """Receive the devices' messages from a broker in a background thread.

    Parameters
    ----------
    url : str
        ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``, optionally with ``user:password@``.
    handle : callable
        ``handle(message_bytes, device_id)``: verifies and stores one message (the
        collector passes its ingest). Its result is ignored.
    topic : str
        The topic filter; its one ``+`` level is the device id. A shared subscription
        (``$share/collectors/edge-runtime/+/windows``) spreads the messages over several
        collector processes.
    ca_file, cert_file, key_file : str, optional
        TLS: the broker's CA, and a client certificate and key if the broker wants one.
    client_id : str
        Names the broker session that queues messages while the collector is away;
        two collectors need two ids (and a shared subscription).
    session_expiry : int
        Seconds the broker keeps that session after a disconnect.
    rejections : tuple of exception types
        What ``handle`` raises to refuse a message for good (counted, acknowledged), by the
        exception's ``reason`` attribute (its class name without one). Anything else it
        raises is a failure: the message will come again.
    on_rejection : callable, optional
        ``on_rejection(reason, topic_device)`` for the refusals the subscriber decides
        itself (``topic-device-mismatch``, ``bad-topic``), so the collector can count them
        beside its own; those ``handle`` refuses it has counted already.
    max_message_bytes : int
        A bigger message is refused as ``oversized``.
    reconnect_delay : (float, float)
        First and longest pause before reconnecting; it doubles after each failure.

    Raises
    ------
    ConfigError
        A bad URL or topic filter, or unreadable TLS files.
    """

    def __init__(self, url: str, handle: Callable[[bytes, str], Any], *, topic: str = DEFAULT_TOPIC,
                 ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                 key_file: str | Path | None = None,
                 client_id: str = DEFAULT_CLIENT_ID, session_expiry: int = DEFAULT_SESSION_EXPIRY,
                 rejections: tuple[type[BaseException], ...] = (SyncError,),
                 on_rejection: Callable[[str, str | None], Any] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 reconnect_delay: tuple[float, float] = (1.0, 30.0)) -> None:
        self.address = parse_mqtt_url(url)
        if not self.address.tls and (ca_file or cert_file or key_file):
            raise ConfigError(f"MQTT URL {self.address.safe_url!r} is not TLS: use mqtts:// with a CA or "
                              "certificate file")
        self.topic = topic
        self._device_level = _device_level(topic)
        self.handle = handle
        self._tls = broker_tls_context(ca_file, cert_file, key_file) if self.address.tls else None
        self.client_id = client_id
        self.session_expiry = int(session_expiry)
        self.rejections = rejections
        self.on_rejection = on_rejection
        self.max_message_bytes = max_message_bytes
        self.reconnect_delay = reconnect_delay
        self._lock = threading.Lock()
        self._received = self._handled = self._failures = self._connections = 0
        self._rejected: Counter[str] = Counter()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._drop_connection = False  # set by a failed handle: reconnect so the broker resends
        self._connack_failed = False

    @classmethod
    def from_settings(cls, settings: MqttSettings, handle: Callable[[bytes, str], Any], **options: Any) -> MqttSubscriber:
        """A subscriber as ``settings`` describe it; ``options`` are the other keyword arguments."""
        return cls(settings.url, handle, topic=settings.topic, client_id=settings.client_id,
                   ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file, **options)

    def __repr__(self) -> str:
        return f"MqttSubscriber({self.address.safe_url!r}, topic={self.topic!r})"

    # ---------------------------------------------------------------- public
    def device_of(self, topic: str) -> str:
        """The device id a message's topic names.

        Raises
        ------
        PayloadError
            The topic does not fit the filter, or its device level is not a valid id.
        """
        levels = topic.split("/")
        if len(levels) != self._device_level[1]:
            raise PayloadError(f"topic {topic[:200]!r} does not fit the filter {self.topic!r}")
        device = levels[self._device_level[0]]
        try:
            return check_device_id(device)
        except ConfigError as exc:
            raise PayloadError(f"topic {topic[:200]!r} names no valid device id") from exc

    def start(self) -> None:
        """Start the background thread (it connects, and reconnects whenever the broker goes)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-subscriber {self.address.safe_url}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and stop the thread (the broker keeps the session, and queues for it)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until connected and subscribed; False if ``timeout`` passed first."""
        return self._subscribed.wait(timeout)

    @property
    def stats(self) -> SubscriberStats:
        with self._lock:
            return SubscriberStats(received=self._received, handled=self._handled, rejected=dict(self._rejected),
                                   failures=self._failures, connections=self._connections,
                                   subscribed=self._subscribed.is_set())

    def __enter__(self) -> MqttSubscriber:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        delay = self.reconnect_delay[0]
        while not self._stopping.is_set():
            healthy = self._session()
            if healthy:
                delay = self.reconnect_delay[0]  # it had been working: start the backoff again
            if self._stopping.wait(delay):
                break
            if not healthy:
                delay = min(delay * 2, self.reconnect_delay[1])

    def _session(self) -> bool:
        """One connection, from connect to its loss (or stop); True if it was subscribed and no handle failed."""
        client = self._client()
        self._drop_connection = False
        self._connack_failed = False
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry
        try:
            client.connect(self.address.host, self.address.port, keepalive=_KEEPALIVE, clean_start=False,
                           properties=properties)
        except (OSError, ValueError) as exc:
            log.warning("MQTT: cannot connect to %s: %s", self.address.safe_url, exc)
            _close(client)
            return False
        was_subscribed = False
        try:
            while not self._stopping.is_set() and not self._drop_connection and not self._connack_failed:
                rc = client.loop(_LOOP_STEP)
                was_subscribed |= self._subscribed.is_set()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("MQTT: connection to %s lost: %s", self.address.safe_url, mqtt.error_string(rc))
                    break
            if self._stopping.is_set():
                client.disconnect()  # a normal DISCONNECT: the broker keeps the session
                client.loop(_LOOP_STEP)
        except (OSError, ValueError) as exc:
            log.warning("MQTT: connection to %s failed: %s", self.address.safe_url, exc)
        except Exception:  # a bug in a callback must not end the thread: log it, connect again
            log.exception("MQTT: the connection to %s failed unexpectedly", self.address.safe_url)
        finally:
            self._subscribed.clear()
            _close(client)
        return was_subscribed and not self._drop_connection

    def _client(self) -> mqtt.Client:
        # A fresh paho client per connection: the broker's session, not paho's, holds the state.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        return client

    # ---------------------------------------------------------------- paho callbacks (in the thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT: broker %s refused client '%s': %s", self.address.safe_url, self.client_id,
                      reason.getName())
            self._connack_failed = True
            return
        with self._lock:
            self._connections += 1
        log.info("MQTT: connected to %s (session %s)", self.address.safe_url,
                 "resumed" if getattr(flags, "session_present", False) else "new")
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("MQTT: broker %s refused the subscription to %r: %s", self.address.safe_url, self.topic,
                      ", ".join(r.getName() for r in reasons))
            self._drop_connection = True
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._received += 1
        data = bytes(message.payload)
        try:
            device = self._check(message.topic, data)
            self.handle(data, device)
        except _Refused as refused:
            self._count_rejection(refused.reason, message.topic, str(refused))
            if self.on_rejection is not None:
                try:
                    self.on_rejection(refused.reason, refused.device)
                except Exception:  # counting must not stop the subscriber (nor leave the message unacknowledged)
                    log.exception("MQTT: on_rejection failed")
        except self.rejections as exc:
            self._count_rejection(str(getattr(exc, "reason", None) or type(exc).__name__), message.topic, str(exc))
        except Exception:  # the store, a bug: leave it unacknowledged, to come again
            with self._lock:
                self._failures += 1
            log.exception("MQTT: handling a message on %r failed; it stays unacknowledged and the "
                          "connection is dropped so the broker delivers it again", message.topic)
            self._drop_connection = True
            return
        else:
            with self._lock:
                self._handled += 1
        client.ack(message.mid, message.qos)

    def _check(self, topic: str, data: bytes) -> str:
        """The topic's device, unless the message's header names another.

        A message that does not parse goes on to ``handle``, which refuses it and counts why.
        """
        try:
            device = self.device_of(topic)
        except PayloadError as exc:
            raise _Refused("bad-topic", str(exc)) from exc
        try:
            header_device = read_message(data, self.max_message_bytes).device_id
        except PayloadError:
            return device
        if header_device != device:
            raise _Refused("topic-device-mismatch", f"a message of device '{header_device}' came on the topic "
                                                    f"of device '{device}'", device)
        return device

    def _count_rejection(self, reason: str, topic: str, detail: str) -> None:
        with self._lock:
            self._rejected[reason] += 1
        log.warning("MQTT: refused a message on %r (%s): %s", topic[:200], reason, detail)


def _device_level(topic: str) -> tuple[int, int]:
    """Where the device id sits in a topic, and how many levels a topic has."""
    levels = topic.split("/")
    if levels[0] == "$share" and len(levels) > 2:
        levels = levels[2:]  # $share/<group>/<filter>: the broker delivers topics without the prefix
    if levels.count("+") != 1 or any("#" in level for level in levels):
        raise ConfigError(f"MQTT topic filter {topic!r} must have one '+' level (the device id) and no '#'")
    return levels.index("+"), len(levels)


def _close(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:  # pragma: no cover
            pass
