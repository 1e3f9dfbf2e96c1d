"""Sending sync messages through an MQTT broker (QoS 1, MQTT 5): the second transport.

The only device module that imports paho-mqtt (``pip install 'edge-runtime[mqtt]'``).
Chosen by the URL's scheme: ``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS,
certificate checks on), with optional ``user:password@`` for brokers that want them.

Each message goes to ``edge-runtime/<device_id>/windows`` with QoS 1, and counts as
sent when the broker's PUBACK comes back: from then on the *broker* holds it, not yet
the collector, which reads it from its own persistent session (see
``docs/sync-mqtt.md``). MQTT 5 rather than 3.1.1 because only 5 lets a PUBACK say no:
a 3.1.1 broker acknowledges a publish its access rules drop, and the window would be
lost while the device counts it sent.

:meth:`MqttTransport.send` answers a :class:`~edge_runtime.sync.transport.SendResult`
(its ``status`` is None: MQTT has no HTTP status; the reason code is in ``detail``), and
never raises for a network or broker problem:

- ``SENT``: the broker acknowledged it.
- ``RETRY``: no connection, a timeout, the broker busy or gone, or no collector
  subscribed to the topic; keep the message and try later.
- ``AUTH``: the broker refused the credentials or this device's access to the topic,
  or its TLS certificate failed the check; keep the message, report, try later.
- ``PERMANENT``: this message can never pass (bigger than the broker accepts); move it
  to the dead-letter table.

Examples
--------
>>> transport = MqttTransport("mqtt://sync:secret@127.0.0.1:1", "kiosk-1", timeout_s=2.0)
>>> transport.topic, transport.host, transport.port, transport.tls
('edge-runtime/kiosk-1/windows', '127.0.0.1', 1, False)
>>> transport  # the password never shows
MqttTransport('mqtt://sync:***@127.0.0.1:1', device_id='kiosk-1')
>>> transport.send(b"...").outcome  # nothing listens on port 1
<Delivery.RETRY: 'retry'>
>>> transport.close()
>>> MqttTransport("http://broker:1883", "kiosk-1")
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: MQTT URL 'http://broker:1883' must start mqtt:// or mqtts://
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.errors import ConfigError
from edge_runtime.sync.keys import check_device_id
from edge_runtime.sync.transport import Delivery, SendResult

__all__ = ["TOPIC_TEMPLATE", "BrokerAddress", "MqttTransport", "broker_tls_context", "parse_mqtt_url"]

TOPIC_TEMPLATE = "edge-runtime/{device_id}/windows"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_LOOP_STEP = 0.1  # seconds per paho network loop while waiting for an answer
_KEEPALIVE = 60
# Bytes a PUBLISH adds around its payload: fixed header (1 + up to 4 of length), topic
# length (2), packet id (2), properties length (1).
_PUBLISH_OVERHEAD = 10

# CONNACK reason codes (MQTT 5, section 3.2.2.2) that mean "not this identity".
_CONNACK_AUTH = {133, 134, 135, 138, 140}  # client id invalid, bad credentials, not authorised, banned, bad method
# PUBACK reason codes (section 3.4.2.1).
_PUBACK_NO_SUBSCRIBERS = 16
_PUBACK_AUTH = {135}  # not authorised
_PUBACK_PERMANENT = {144, 149, 153}  # topic name invalid, packet too large, payload format invalid
_DISCONNECT_TOO_LARGE = 149


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    """Where a broker is and how to log in, read from an ``mqtt://`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        """The URL with the password masked: fit for logs and messages."""
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Read a broker URL: ``mqtt[s]://[user[:password]@]host[:port]``.

    Raises
    ------
    ConfigError
        Another scheme, no host, a bad port, or a path, query or fragment (the topic is fixed).

    Examples
    --------
    >>> parse_mqtt_url("mqtts://gw%2D7:p%40ss@broker.example")
    BrokerAddress(host='broker.example', port=8883, tls=True, username='gw-7')
    """
    shown = _mask(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"MQTT URL {shown!r} is not valid: {exc}") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"MQTT URL {shown!r} must start mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"MQTT URL {shown!r} names no broker host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"MQTT URL {shown!r} must be only scheme, host and port: the topic is "
                          f"{TOPIC_TEMPLATE!r}")
    return BrokerAddress(
        host=parts.hostname, port=port or _DEFAULT_PORTS[parts.scheme], tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None)


def broker_tls_context(ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                       key_file: str | Path | None = None) -> ssl.SSLContext:
    """The TLS settings for a broker: its certificate and host name checked against ``ca_file``
    (the system's CAs without it), and a client certificate for brokers that want one.

    Raises
    ------
    ConfigError
        A file cannot be read, or a key comes without its certificate.
    """
    if key_file is not None and cert_file is None:
        raise ConfigError(f"key file {str(key_file)!r} needs its client certificate (cert_file)")
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CA file {str(ca_file)!r} cannot be read: {exc}") from exc
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"client certificate {str(cert_file)!r} cannot be used: {exc}") from exc
    return context


def _mask(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@")[-1]
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


class _Failed(Exception):
    """Internal: a send ends early with this outcome."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.detail)
        self.result = result


class MqttTransport:
    """Publish sync messages to ``edge-runtime/<device_id>/windows`` with QoS 1.

    The connection opens on the first :meth:`send` and stays open between sends; after
    any failure it is dropped, and the next send starts a fresh one (clean start: the
    outbox, not an MQTT session, remembers what is unsent).

    Parameters
    ----------
    url : str
        ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``, optionally with ``user:password@``.
    device_id : str
        The device, as in its key file: it names the topic.
    ca_file : str or Path, optional
        The CA certificate(s) that signed the broker's certificate (``mqtts``); without
        it, the system's CAs. Certificates and host names are always checked.
    cert_file, key_file : str or Path, optional
        A client certificate and its key, for brokers that authenticate devices by
        certificate (mutual TLS).
    timeout_s : float
        Seconds to wait for the connection, for the broker's CONNACK, and for each PUBACK.
    client_id : str, optional
        The MQTT client id; ``edge-runtime-<device_id>`` by default.

    Raises
    ------
    ConfigError
        A bad URL or device id, TLS files for plain ``mqtt`` or unreadable ones, or a timeout
        that is not positive.
    """

    def __init__(self, url: str, device_id: str, *, ca_file: str | Path | None = None,
                 cert_file: str | Path | None = None, key_file: str | Path | None = None, timeout_s: float = 10.0,
                 client_id: str | None = None) -> None:
        self.address = parse_mqtt_url(url)
        self.device_id = check_device_id(device_id)
        if not timeout_s > 0:
            raise ConfigError(f"The 'timeout_s' parameter of MqttTransport must be a number of seconds above 0. "
                              f"Got {timeout_s!r} instead.")
        if not self.address.tls and (ca_file or cert_file or key_file):
            raise ConfigError(f"MQTT URL {self.address.safe_url!r} is not TLS: use mqtts:// with a CA or "
                              "certificate file")
        self._tls = broker_tls_context(ca_file, cert_file, key_file) if self.address.tls else None
        self.timeout_s = float(timeout_s)
        self.client_id = client_id or f"edge-runtime-{device_id}"
        self.topic = TOPIC_TEMPLATE.format(device_id=device_id)
        self._client: mqtt.Client | None = None
        self._max_packet: int | None = None  # the broker's MaximumPacketSize, from its CONNACK
        self._connack: ReasonCode | None = None
        self._acks: dict[int, ReasonCode] = {}
        self._gone: ReasonCode | None = None  # the broker's DISCONNECT reason, or a lost connection
        self._gone_by_broker = False  # a DISCONNECT packet, not a dropped socket
        self._last_used = 0.0  # time.monotonic() of the connection's last answer

    host = property(lambda self: self.address.host, doc="The broker's host name.")
    port = property(lambda self: self.address.port, doc="The broker's port.")
    tls = property(lambda self: self.address.tls, doc="Whether the connection uses TLS (``mqtts``).")

    def __repr__(self) -> str:
        return f"MqttTransport({self.address.safe_url!r}, device_id={self.device_id!r})"

    def send(self, message: bytes) -> SendResult:
        """Publish one message and wait for the broker's PUBACK.

        Returns
        -------
        SendResult
            ``SENT`` once the broker acknowledged it; ``RETRY``, ``AUTH`` or ``PERMANENT``
            with the reason otherwise (see the module's description).
        """
        try:
            client = self._connection()
            if self._max_packet is not None and len(message) + len(self.topic) + _PUBLISH_OVERHEAD > self._max_packet:
                return SendResult(Delivery.PERMANENT, None, f"the message is {len(message)} bytes, over the broker's "
                                   f"maximum packet size of {self._max_packet} bytes")
            info = client.publish(self.topic, message, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise _Failed(SendResult(Delivery.RETRY, None, f"publish failed: {mqtt.error_string(info.rc)}"))
            reason = self._wait(client, lambda: self._acks.get(info.mid), "the broker's PUBACK")
            self._acks.pop(info.mid, None)
            self._last_used = time.monotonic()
        except _Failed as failed:
            self._drop()
            return failed.result
        return _puback_outcome(reason, self.topic)

    def close(self) -> None:
        """Disconnect from the broker (a later send connects again)."""
        client = self._client
        if client is not None and self._gone is None:
            try:
                client.disconnect()
                client.loop(_LOOP_STEP)  # flush the DISCONNECT packet
            except (OSError, ValueError):
                pass
        self._drop()

    def __enter__(self) -> MqttTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- connection
    def _connection(self) -> mqtt.Client:
        if self._reusable():
            assert self._client is not None
            return self._client
        self._drop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.connect_timeout = self.timeout_s
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        self._client = client
        try:
            client.connect(self.address.host, self.address.port, keepalive=_KEEPALIVE, clean_start=True)
        except ssl.SSLCertVerificationError as exc:  # AUTH, as for HTTPS: the broker is not who it should be
            raise _Failed(SendResult(Delivery.AUTH, None, f"the broker's TLS certificate was refused "
                                      f"({self.address.safe_url}): {exc.verify_message}")) from exc
        except (OSError, ValueError) as exc:  # refused, unreachable, unknown host, TLS handshake, timeout
            raise _Failed(SendResult(Delivery.RETRY, None, f"cannot connect to the broker {self.address.safe_url}: "
                                      f"{_describe(exc)}")) from exc
        reason = self._wait(client, lambda: self._connack, "the broker's CONNACK")
        if reason.is_failure:
            status = Delivery.AUTH if reason.value in _CONNACK_AUTH else Delivery.RETRY
            raise _Failed(SendResult(status, None, f"the broker {self.address.safe_url} refused the connection of "
                                      f"client '{self.client_id}': {reason.getName()} ({reason.value})"))
        self._last_used = time.monotonic()
        return client

    def _reusable(self) -> bool:
        """Whether the open connection is still good: nobody loops paho between sends, so
        no keepalive goes out, and a broker drops a connection idle past 1.5 keepalives."""
        client = self._client
        if client is None or self._gone is not None or not client.is_connected():
            return False
        if time.monotonic() - self._last_used > _KEEPALIVE / 2:
            return False
        try:
            rc = client.loop(0)  # read what came meanwhile: a DISCONNECT, or the socket's end
        except (OSError, ValueError):
            return False
        return rc == mqtt.MQTT_ERR_SUCCESS and self._gone is None

    def _wait(self, client: mqtt.Client, answer: Any, what: str) -> ReasonCode:
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = answer()
            if found is not None:
                return found  # type: ignore[no-any-return]
            if self._gone is not None:
                if self._gone_by_broker and self._gone.value == _DISCONNECT_TOO_LARGE:
                    raise _Failed(SendResult(Delivery.PERMANENT, None, "the broker closed the connection: the "
                                              "message is bigger than it accepts (Packet too large)"))
                cause = self._gone.getName() if self._gone_by_broker else "connection lost"
                raise _Failed(SendResult(Delivery.RETRY, None, f"the broker {self.address.safe_url} went away while "
                                          f"waiting for {what}: {cause}"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failed(SendResult(Delivery.RETRY, None, f"no answer from {self.address.safe_url} in "
                                          f"{self.timeout_s:g} s waiting for {what}"))
            try:
                rc = client.loop(min(_LOOP_STEP, remaining))
            except (OSError, ValueError) as exc:
                raise _Failed(SendResult(Delivery.RETRY, None, f"connection to {self.address.safe_url} failed: "
                                          f"{_describe(exc)}")) from exc
            if rc != mqtt.MQTT_ERR_SUCCESS and self._gone is None and answer() is None:
                raise _Failed(SendResult(Delivery.RETRY, None, f"connection to {self.address.safe_url} lost "
                                          f"while waiting for {what}: {mqtt.error_string(rc)}"))

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # A fresh client per connection: a paho client that lost its connection keeps
            # in-flight messages to resend. Its socket pair closes when it is collected.
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:  # pragma: no cover
                    pass
        self._max_packet = None
        self._connack = None
        self._acks.clear()
        self._gone = None
        self._gone_by_broker = False

    # ---------------------------------------------------------------- paho callbacks (run inside loop())
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self._max_packet = getattr(properties, "MaximumPacketSize", None)
        self._connack = reason

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self._acks[mid] = reason

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self._gone = reason
        self._gone_by_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))


def _puback_outcome(reason: ReasonCode, topic: str) -> SendResult:
    if reason.value == _PUBACK_NO_SUBSCRIBERS:
        # The broker took it and dropped it: no collector has ever subscribed (or its
        # session expired), so nothing would read it. Keep it until one does.
        return SendResult(Delivery.RETRY, None, f"the broker has no subscriber on '{topic}': is the collector's "
                           "MQTT subscription running?")
    if not reason.is_failure:
        return SendResult(Delivery.SENT, None, "")
    detail = f"the broker refused the message on '{topic}': {reason.getName()} ({reason.value})"
    if reason.value in _PUBACK_AUTH:
        return SendResult(Delivery.AUTH, None, detail)
    if reason.value in _PUBACK_PERMANENT:
        return SendResult(Delivery.PERMANENT, None, detail)
    return SendResult(Delivery.RETRY, None, detail)  # quota exceeded, unspecified, implementation specific


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
