"""MQTT sync through a real mosquitto on 127.0.0.1: MqttTransport publishes, MqttSubscriber receives.

Nothing is mocked: real window summaries, signed, sent through a broker this suite
starts, verified and assembled on the other side. Waits are bounded by deadlines,
never measured.
"""

from __future__ import annotations

import datetime
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.mqtt_ingest import MqttSubscriber
from edge_runtime.errors import ConfigError, PayloadError
from edge_runtime.sync.keys import DeviceKey
from edge_runtime.sync.mqtt_transport import MqttTransport, parse_mqtt_url
from edge_runtime.sync.transport import Delivery, SendResult
from edge_runtime.sync.payload import Message, WindowSummary, assemble, encode_window, read_message
from tests.servers import MosquittoServer
from tests.test_payload import summary_of, window  # noqa: F401  (window is a fixture)

FAST = (0.05, 0.5)  # the subscriber's reconnect pauses in tests


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until ``condition()`` holds; fail naming ``what`` after ``timeout`` (a bound, not a measure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Receiver:
    """A collector's handle in miniature: verify each message, join the parts, keep the windows."""

    def __init__(self, keys: dict[str, DeviceKey]) -> None:
        self.keys = keys
        self.lock = threading.Lock()
        self.parts: dict[str, dict[int, Message]] = {}
        self.windows: list[WindowSummary] = []
        self.seen: Counter[tuple[str, str, str, int]] = Counter()
        self.devices: list[str] = []

    def __call__(self, data: bytes, device_id: str) -> str:
        message = read_message(data)
        message.verify(self.keys[device_id].public_text)
        with self.lock:
            self.seen[message.key] += 1
            self.devices.append(device_id)
            parts = self.parts.setdefault(message.header["document_sha256"], {})
            parts[message.header["part"]] = message
            if len(parts) < message.header["parts"]:
                return "part-stored"
            window = assemble(list(parts.values()))
            if any(w.key == window.key for w in self.windows):
                return "duplicate"
            self.windows.append(window)
            return "stored"

    def count(self) -> int:
        with self.lock:
            return len(self.windows)


@pytest.fixture
def key() -> DeviceKey:
    return DeviceKey.generate("kiosk-1")


@pytest.fixture
def receiver(key: DeviceKey) -> Receiver:
    return Receiver({key.device_id: key})


@pytest.fixture
def subscribe() -> Iterator[Callable[..., MqttSubscriber]]:
    """Start subscribers that stop at the end of the test (each with its own session id)."""
    started: list[MqttSubscriber] = []

    def start(url: str, handle: Callable[[bytes, str], Any], **options: Any) -> MqttSubscriber:
        options.setdefault("client_id", f"collector-{uuid.uuid4().hex[:12]}")  # a session of its own
        options.setdefault("reconnect_delay", FAST)
        subscriber = MqttSubscriber(url, handle, **options)
        started.append(subscriber)
        subscriber.start()
        assert subscriber.wait_subscribed(30), "the subscriber never subscribed"
        return subscriber

    yield start
    for subscriber in started:
        subscriber.stop()


def sent(result: SendResult) -> bool:
    assert result.outcome in (Delivery.SENT, Delivery.RETRY), result
    return result.outcome is Delivery.SENT


# ------------------------------------------------------------------ the round trip
def test_a_signed_window_goes_through_the_broker_and_arrives_verified(
        mosquitto: MosquittoServer, window: dict[str, Any], key: DeviceKey, receiver: Receiver,
        subscribe: Callable[..., MqttSubscriber]) -> None:
    subscriber = subscribe(mosquitto.url, receiver)
    summary = summary_of(window, seq_first=101, seq_last=101)
    [message] = encode_window(summary, key)
    with MqttTransport(mosquitto.url, key.device_id, timeout_s=10) as transport:
        assert transport.send(message) .outcome is Delivery.SENT
    wait_for(lambda: receiver.count() == 1, "the window")
    assert receiver.windows == [summary]
    assert receiver.devices == ["kiosk-1"]
    stats = subscriber.stats
    assert (stats.received, stats.handled, stats.rejected, stats.failures) == (1, 1, {}, 0)


def test_a_window_split_into_parts_arrives_whole(mosquitto: MosquittoServer, window: dict[str, Any],
                                                 key: DeviceKey, receiver: Receiver,
                                                 subscribe: Callable[..., MqttSubscriber]) -> None:
    subscribe(mosquitto.url, receiver)
    summary = summary_of(window, seq_first=102, seq_last=102)
    messages = encode_window(summary, key, max_message_bytes=4096)
    assert len(messages) > 3
    with MqttTransport(mosquitto.url, key.device_id) as transport:
        assert [transport.send(m).outcome for m in messages] == [Delivery.SENT] * len(messages)
    wait_for(lambda: receiver.count() == 1, "the assembled window")
    assert receiver.windows == [summary]


def test_qos1_duplicates_reach_the_handler_and_change_nothing(mosquitto: MosquittoServer, window: dict[str, Any],
                                                              key: DeviceKey, receiver: Receiver,
                                                              subscribe: Callable[..., MqttSubscriber]) -> None:
    """At least once: the same message twice (a device re-sending after a lost PUBACK)."""
    subscriber = subscribe(mosquitto.url, receiver)
    summary = summary_of(window, seq_first=103, seq_last=103)
    [message] = encode_window(summary, key)
    with MqttTransport(mosquitto.url, key.device_id) as transport:
        assert transport.send(message).outcome is Delivery.SENT
        assert transport.send(message).outcome is Delivery.SENT
    wait_for(lambda: subscriber.stats.handled == 2, "both copies")
    assert receiver.seen[summary.key] == 2
    assert receiver.windows == [summary]
    assert subscriber.stats.failures == 0


# ------------------------------------------------------------------ refusals
def test_a_message_on_another_devices_topic_is_refused_and_counted(
        mosquitto: MosquittoServer, window: dict[str, Any], key: DeviceKey,
        subscribe: Callable[..., MqttSubscriber]) -> None:
    other = DeviceKey.generate("kiosk-2")
    receiver = Receiver({key.device_id: key, other.device_id: other})
    counted: list[tuple[str, str | None]] = []
    subscriber = subscribe(mosquitto.url, receiver, on_rejection=lambda *args: counted.append(args))
    [forged] = encode_window(summary_of(window, seq_first=104, seq_last=104), key)
    [honest] = encode_window(summary_of(window, device_id="kiosk-2", seq_first=105, seq_last=105), other)
    with MqttTransport(mosquitto.url, "kiosk-2") as transport:
        # The broker takes both: only the collector can tell.
        assert transport.send(forged).outcome is Delivery.SENT
        assert transport.send(b"not a sync message").outcome is Delivery.SENT
        assert transport.send(honest).outcome is Delivery.SENT
    wait_for(lambda: receiver.count() == 1, "the honest window")
    wait_for(lambda: subscriber.stats.received == 3, "all three messages")
    assert [w.device_id for w in receiver.windows] == ["kiosk-2"]
    assert receiver.seen == Counter({receiver.windows[0].key: 1})
    stats = subscriber.stats
    assert stats.rejected == {"topic-device-mismatch": 1, "malformed": 1}
    assert counted == [("topic-device-mismatch", "kiosk-2")]  # the malformed one, handle counted itself
    assert (stats.handled, stats.failures) == (1, 0)


def test_a_message_the_handler_refuses_is_counted_by_its_reason_and_not_redelivered(
        mosquitto: MosquittoServer, window: dict[str, Any], key: DeviceKey,
        subscribe: Callable[..., MqttSubscriber]) -> None:
    impostor = DeviceKey.generate("kiosk-1")  # same id, another key: the signature fails
    receiver = Receiver({key.device_id: key})
    subscriber = subscribe(mosquitto.url, receiver)
    [message] = encode_window(summary_of(window, seq_first=106, seq_last=106), impostor)
    with MqttTransport(mosquitto.url, key.device_id) as transport:
        assert transport.send(message).outcome is Delivery.SENT
    wait_for(lambda: subscriber.stats.rejected == {"SignatureError": 1}, "the refusal")
    assert receiver.count() == 0 and subscriber.stats.connections == 1


# ------------------------------------------------------------------ failures and recovery
def test_broker_stopped_mid_run_the_transport_retries_and_later_sends_succeed(
        mosquitto_factory: Callable[..., MosquittoServer], window: dict[str, Any], key: DeviceKey,
        receiver: Receiver, subscribe: Callable[..., MqttSubscriber]) -> None:
    broker = mosquitto_factory()
    subscriber = subscribe(broker.url, receiver)
    outbox = [encode_window(summary_of(window, seq_first=s, seq_last=s), key)[0] for s in range(200, 206)]
    transport = MqttTransport(broker.url, key.device_id, timeout_s=5)
    try:
        assert transport.send(outbox[0]).outcome is Delivery.SENT
        assert transport.send(outbox[1]).outcome is Delivery.SENT
        broker.stop()
        # The open connection is found dead before publishing (or, in a race, while waiting).
        assert transport.send(outbox[2]).outcome is Delivery.RETRY
        down = transport.send(outbox[2])
        assert down.outcome is Delivery.RETRY and "cannot connect" in down.detail, down
        broker.start()
        # The broker lost its sessions (no persistence): until the subscriber is back, a
        # PUBACK says "no matching subscribers", which is a retry too.
        wait_for(lambda: subscriber.stats.connections == 2 and subscriber.stats.subscribed, "the resubscription")
        for message in outbox[2:]:
            wait_for(lambda: sent(transport.send(message)), "a successful send")  # noqa: B023
    finally:
        transport.close()
    wait_for(lambda: receiver.count() == len(outbox), "every window")
    assert sorted(w.seq_first for w in receiver.windows) == list(range(200, 206))


def test_a_connection_the_broker_closed_between_sends_is_replaced_not_reported(
        mosquitto: MosquittoServer, window: dict[str, Any], key: DeviceKey, receiver: Receiver,
        subscribe: Callable[..., MqttSubscriber]) -> None:
    """Between two sync runs the broker may drop the idle connection; the next send reconnects."""
    subscribe(mosquitto.url, receiver)
    first, second = (encode_window(summary_of(window, seq_first=s, seq_last=s), key)[0] for s in (110, 111))
    with MqttTransport(mosquitto.url, key.device_id) as transport:
        assert transport.send(first).outcome is Delivery.SENT
        # Another connection with the same client id: the broker closes this one ("session taken over").
        with MqttTransport(mosquitto.url, key.device_id, client_id=transport.client_id) as usurper:
            assert usurper.send(first).outcome is Delivery.SENT
        assert transport.send(second).outcome is Delivery.SENT
    wait_for(lambda: receiver.count() == 2, "both windows")


def test_no_subscriber_means_retry_not_sent(mosquitto_factory: Callable[..., MosquittoServer],
                                            window: dict[str, Any], key: DeviceKey) -> None:
    """A broker with no collector session drops the message: the device must keep it."""
    broker = mosquitto_factory()
    [message] = encode_window(summary_of(window), key)
    with MqttTransport(broker.url, key.device_id) as transport:
        outcome = transport.send(message)
    assert outcome.outcome is Delivery.RETRY
    assert "no subscriber on 'edge-runtime/kiosk-1/windows'" in outcome.detail


def test_the_broker_queues_for_a_collector_that_is_away(mosquitto_factory: Callable[..., MosquittoServer],
                                                        window: dict[str, Any], key: DeviceKey,
                                                        receiver: Receiver,
                                                        subscribe: Callable[..., MqttSubscriber]) -> None:
    broker = mosquitto_factory()
    first = subscribe(broker.url, receiver, client_id="collector-a")
    first.stop()  # a normal disconnect: the broker keeps the session and queues for it
    messages = [encode_window(summary_of(window, seq_first=s, seq_last=s), key)[0] for s in (300, 301)]
    with MqttTransport(broker.url, key.device_id) as transport:
        assert [transport.send(m).outcome for m in messages] == [Delivery.SENT] * 2
    assert receiver.count() == 0
    subscribe(broker.url, receiver, client_id="collector-a")
    wait_for(lambda: receiver.count() == 2, "the queued windows")


def test_a_handler_failure_leaves_the_message_to_be_delivered_again(
        mosquitto: MosquittoServer, window: dict[str, Any], key: DeviceKey,
        subscribe: Callable[..., MqttSubscriber]) -> None:
    """The store down for a moment: the message is not acknowledged, and comes again."""
    receiver = Receiver({key.device_id: key})
    failures = [RuntimeError("the store is down")]

    def flaky(data: bytes, device_id: str) -> str:
        if failures:
            raise failures.pop()
        return receiver(data, device_id)

    subscriber = subscribe(mosquitto.url, flaky)
    summary = summary_of(window, seq_first=107, seq_last=107)
    with MqttTransport(mosquitto.url, key.device_id) as transport:
        assert transport.send(encode_window(summary, key)[0]).outcome is Delivery.SENT
    wait_for(lambda: receiver.count() == 1, "the redelivered window")
    assert receiver.windows == [summary]
    stats = subscriber.stats
    assert stats.failures == 1 and stats.handled == 1 and stats.connections >= 2


# ------------------------------------------------------------------ the broker says no
def test_an_oversized_message_is_rejected_for_good(mosquitto_factory: Callable[..., MosquittoServer],
                                                   window: dict[str, Any], key: DeviceKey, receiver: Receiver,
                                                   subscribe: Callable[..., MqttSubscriber]) -> None:
    broker = mosquitto_factory(["max_packet_size 4096"])
    subscribe(broker.url, receiver)
    summary = summary_of(window, seq_first=108, seq_last=108)
    [whole] = encode_window(summary, key)
    with MqttTransport(broker.url, key.device_id) as transport:
        outcome = transport.send(whole)
        assert outcome.outcome is Delivery.PERMANENT
        assert "over the broker's maximum packet size of 4096 bytes" in outcome.detail
        # Split small enough, the same window passes on the same connection.
        parts = encode_window(summary, key, max_message_bytes=4000)
        assert {transport.send(m).outcome for m in parts} == {Delivery.SENT}
    wait_for(lambda: receiver.count() == 1, "the split window")


def test_credentials_and_topic_access_refused_are_auth_outcomes(
        mosquitto_factory: Callable[..., MosquittoServer], window: dict[str, Any], key: DeviceKey,
        tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "kiosk-1", "s3cret"], check=True)
    acl = tmp_path / "acl"
    acl.write_text("pattern write edge-runtime/%u/windows\n")
    broker = mosquitto_factory([f"password_file {passwords}", f"acl_file {acl}"], anonymous=False)
    [message] = encode_window(summary_of(window), key)
    port = broker.port
    for url, expected in [(f"mqtt://kiosk-1:wrong@127.0.0.1:{port}", "Not authorized (135)"),
                          (f"mqtt://127.0.0.1:{port}", "Not authorized (135)")]:
        with MqttTransport(url, "kiosk-1") as transport:
            outcome = transport.send(message)
        assert outcome.outcome is Delivery.AUTH and expected in outcome.detail, outcome
        assert "wrong" not in outcome.detail  # the password is never shown
    # Logged in as kiosk-1, publishing on kiosk-2's topic: the ACL refuses it in the PUBACK.
    with MqttTransport(f"mqtt://kiosk-1:s3cret@127.0.0.1:{port}", "kiosk-2") as transport:
        outcome = transport.send(message)
    assert outcome.outcome is Delivery.AUTH and "Not authorized" in outcome.detail, outcome


# ------------------------------------------------------------------ TLS
def _tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA, and a certificate it signs for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
                decipher_only=False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                            critical=False)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    device_key = ec.generate_private_key(ec.SECP256R1())
    files = {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "kiosk-1.pem", "kiosk-1.key")}
    files["ca.pem"].write_bytes(certificate("edge-runtime test CA", ca_key, "edge-runtime test CA", ca_key, ca=True)
                                .public_bytes(serialization.Encoding.PEM))
    files["server.pem"].write_bytes(certificate("127.0.0.1", server_key, "edge-runtime test CA", ca_key, ca=False)
                                    .public_bytes(serialization.Encoding.PEM))
    files["server.key"].write_bytes(pem_key(server_key))
    files["kiosk-1.pem"].write_bytes(certificate("kiosk-1", device_key, "edge-runtime test CA", ca_key, ca=False)
                                     .public_bytes(serialization.Encoding.PEM))
    files["kiosk-1.key"].write_bytes(pem_key(device_key))
    return files


def test_mqtts_with_a_ca_file_checks_the_broker_certificate(
        mosquitto_factory: Callable[..., MosquittoServer], window: dict[str, Any], key: DeviceKey,
        receiver: Receiver, subscribe: Callable[..., MqttSubscriber], tmp_path: Path) -> None:
    tls = _tls_files(tmp_path)
    broker = mosquitto_factory([f"cafile {tls['ca.pem']}", f"certfile {tls['server.pem']}",
                                f"keyfile {tls['server.key']}"])
    url = f"mqtts://127.0.0.1:{broker.port}"
    subscribe(url, receiver, ca_file=str(tls["ca.pem"]))
    summary = summary_of(window, seq_first=109, seq_last=109)
    [message] = encode_window(summary, key)
    with MqttTransport(url, key.device_id, ca_file=str(tls["ca.pem"])) as transport:
        assert transport.send(message) .outcome is Delivery.SENT
    wait_for(lambda: receiver.count() == 1, "the window over TLS")
    assert receiver.windows == [summary]
    # Without our CA (the system's CAs only), the broker's certificate is refused.
    with MqttTransport(url, key.device_id) as transport:
        refused = transport.send(message)
    assert refused.outcome is Delivery.AUTH and "certificate was refused" in refused.detail, refused
    # And plain MQTT to a TLS port never gets an answer it can read.
    with MqttTransport(f"mqtt://127.0.0.1:{broker.port}", key.device_id, timeout_s=2) as transport:
        assert transport.send(message).outcome is Delivery.RETRY


# ------------------------------------------------------------------ configuration
def test_broker_urls() -> None:
    assert parse_mqtt_url("mqtt://broker") == parse_mqtt_url("mqtt://broker:1883")
    address = parse_mqtt_url("mqtts://gw%3A1:p%40ss%2Fword@[::1]:8884/")
    assert (address.host, address.port, address.tls, address.username, address.password) == (
        "::1", 8884, True, "gw:1", "p@ss/word")
    assert address.safe_url == "mqtts://gw:1:***@[::1]:8884"
    assert "p@ss" not in repr(address)
    for url, message in [("http://b", "must start mqtt:// or mqtts://"), ("mqtt://", "names no broker host"),
                         ("mqtt://b/topic", "must be only scheme, host and port"),
                         ("mqtt://b:99999", "is not valid"), ("mqtt://u:hunter2@b/x", "u:\\*\\*\\*@b/x")]:
        with pytest.raises(ConfigError, match=message) as caught:
            parse_mqtt_url(url)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="device id 'a/b' is not valid"):
        MqttTransport("mqtt://b", "a/b")
    with pytest.raises(ConfigError, match="is not TLS"):
        MqttTransport("mqtt://b", "kiosk-1", ca_file="ca.pem")
    with pytest.raises(ConfigError, match="'timeout_s' parameter of MqttTransport must be a number of seconds"):
        MqttTransport("mqtt://b", "kiosk-1", timeout_s=0)
    with pytest.raises(ConfigError, match="CA file '/nonexistent/ca.pem' cannot be read"):
        MqttTransport("mqtts://b", "kiosk-1", ca_file=Path("/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match="needs its client certificate"):
        MqttSubscriber("mqtts://b", print, key_file="device.key")


def test_subscriber_topic_filters() -> None:
    shared = MqttSubscriber("mqtt://b", print, topic="$share/collectors/edge-runtime/+/windows")
    assert shared.device_of("edge-runtime/gw-7/windows") == "gw-7"
    plain = MqttSubscriber("mqtt://b", print)
    for topic in ("edge-runtime/windows", "edge-runtime/a/b/windows", "edge-runtime/-x/windows"):
        with pytest.raises(PayloadError):
            plain.device_of(topic)
    for topic in ("edge-runtime/+/+", "edge-runtime/#", "edge-runtime/kiosk-1/windows"):
        with pytest.raises(ConfigError, match="one '\\+' level"):
            MqttSubscriber("mqtt://b", print, topic=topic)


def test_mutual_tls_a_device_certificate_is_its_identity(
        mosquitto_factory: Callable[..., MosquittoServer], window: dict[str, Any], key: DeviceKey,
        tmp_path: Path) -> None:
    """Per-device certificates: the broker takes the certificate's CN as the user, and the ACL
    lets that user write its own topic only."""
    tls = _tls_files(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text("pattern write edge-runtime/%u/windows\n")
    broker = mosquitto_factory([f"cafile {tls['ca.pem']}", f"certfile {tls['server.pem']}",
                                f"keyfile {tls['server.key']}", "require_certificate true",
                                "use_identity_as_username true", f"acl_file {acl}"], anonymous=False)
    url = f"mqtts://127.0.0.1:{broker.port}"
    [message] = encode_window(summary_of(window), key)
    device_tls = {"ca_file": tls["ca.pem"], "cert_file": tls["kiosk-1.pem"], "key_file": tls["kiosk-1.key"]}
    # Nobody subscribes here: an accepted publish answers "no matching subscribers".
    with MqttTransport(url, "kiosk-1", **device_tls) as transport:
        accepted = transport.send(message)
    assert accepted.outcome is Delivery.RETRY and "no subscriber" in accepted.detail, accepted
    with MqttTransport(url, "kiosk-2", **device_tls) as transport:
        refused = transport.send(message)
    assert refused.outcome is Delivery.AUTH and "Not authorized" in refused.detail, refused
    with MqttTransport(url, "kiosk-1", ca_file=tls["ca.pem"]) as transport:
        assert transport.send(message).outcome is not Delivery.SENT  # no client certificate: no connection
