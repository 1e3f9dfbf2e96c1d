"""The collector subscribed to a real mosquitto broker: the same ingest as HTTP, QoS 1, a persistent session."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.stores import FleetStore, open_store
from tests.fleet_device import SimulatedDevice
from tests.servers import CollectorProcess, MosquittoServer

TOPIC = "edge-runtime/{}/windows"


def publish(broker: MosquittoServer, topic: str, payloads: list[bytes]) -> None:
    """Publish with QoS 1 and wait for each PUBACK, as the device's transport does."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-device")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.1)


@pytest.fixture
def registered(tmp_path: Path, monitored_window: dict[str, Any]) -> tuple[str, SimulatedDevice]:
    device = SimulatedDevice(monitored_window)
    url = f"sqlite:///{tmp_path}/fleet.db"
    store = open_store(url)
    store.add_device(device.device_id, device.public_key, now=0.0)
    store.close()
    return url, device


def _count(url: str, read: Callable[[FleetStore], Any]) -> Any:
    store = open_store(url)
    try:
        return read(store)
    finally:
        store.close()


@pytest.mark.slow
def test_windows_published_to_the_broker_are_stored_once(mosquitto_factory: Callable[..., MosquittoServer],
                                                         registered: tuple[str, SimulatedDevice],
                                                         monitored_window: dict[str, Any], tmp_path: Path) -> None:
    url, device = registered
    mosquitto_broker = mosquitto_factory()  # its own broker: the collector's session must not outlive the test
    collector = CollectorProcess(url, "--mqtt", mosquitto_broker.url, log=tmp_path / "collector.log").start()
    topic = TOPIC.format(device.device_id)
    now = time.time()
    try:
        [first] = device.messages(1, closed_at=now, sent_at=now)
        # The subscription comes up in the background: publish the first window (idempotent) until it lands.
        deadline = time.monotonic() + 60
        while _count(url, lambda s: s.window_count()) == 0:
            assert time.monotonic() < deadline, (tmp_path / "collector.log").read_text()
            publish(mosquitto_broker, topic, [first])
            time.sleep(0.3)
        parts = device.messages(2, closed_at=now + 1, sent_at=now + 1, max_message_bytes=8192)
        forged = SimulatedDevice(monitored_window, device_id=device.device_id)  # another key, same id
        [bad] = forged.messages(3, closed_at=now, sent_at=now)
        publish(mosquitto_broker, topic, [*reversed(parts), parts[0], first, bad])
        publish(mosquitto_broker, TOPIC.format("someone-else"), [first])  # another device's topic
        wait_for(lambda: _count(url, lambda s: s.window_count()) == 2
                 and _count(url, lambda s: dict(s.rejections())) == {"bad-signature": 1,
                                                                     "topic-device-mismatch": 1})
        assert [w.seq_first for w in _count(url, lambda s: list(s.windows()))] == [1, 2]
        with urllib.request.urlopen(collector.url + "/metrics", timeout=10) as answer:
            exposition = answer.read().decode()
        assert 'edge_runtime_collector_rejections_total{reason="bad-signature"} 1.0' in exposition
        assert 'edge_runtime_collector_rejections_total{reason="topic-device-mismatch"} 1.0' in exposition
        assert 'edge_runtime_collector_windows_ingested_total{outcome="stored"} 2.0' in exposition

        # Down, then back: QoS 1 on a persistent session keeps what was published meanwhile.
        collector.stop()
        later = [device.messages(seq, closed_at=now + seq, sent_at=now + seq)[0] for seq in (4, 5)]
        publish(mosquitto_broker, topic, later)
        collector = CollectorProcess(url, "--mqtt", mosquitto_broker.url, port=collector.port,
                                     log=tmp_path / "collector.log").start()
        wait_for(lambda: _count(url, lambda s: s.window_count()) == 4)
        assert [w.seq_first for w in _count(url, lambda s: list(s.windows()))] == [1, 2, 4, 5]
    finally:
        collector.stop()
