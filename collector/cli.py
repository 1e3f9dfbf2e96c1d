"""``edge-runtime collector ...``: the fleet collector's commands.

Registered with the ``edge-runtime`` command through the ``edge_runtime.commands``
entry point; importing this module needs the ``collector`` extra (uvicorn, starlette),
so on a device install the command answers with the line to install it.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from collector.extra import require_collector_extra

require_collector_extra()  # before anything that needs it: the ImportError is what the CLI reports

from collector.registry import register_bundle, register_device  # noqa: E402
from collector.server import ServerConfig, serve  # noqa: E402
from collector.stores import FleetRetention, open_store  # noqa: E402
from edge_runtime.cli.options import library_errors  # noqa: E402
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES  # noqa: E402

__all__ = ["collector_command"]

_store_option = click.option("--store", "store_url", required=True, metavar="URL",
                             help="Fleet store: sqlite:///fleet.db (default kind) or postgresql://USER@HOST:PORT/DB.")


@click.group("collector")
def collector_command() -> None:
    """The fleet collector: receive devices' signed window summaries and store each once."""


@collector_command.command("serve")
@_store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8750, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate (chain) to serve HTTPS; needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert.")
@click.option("--max-message-bytes", default=DEFAULT_MAX_MESSAGE_BYTES, show_default=True,
              type=click.IntRange(1024), help="Largest message accepted (bigger bodies get 413 unread).")
@click.option("--max-age-days", type=click.FloatRange(min=0, min_open=True),
              help="Retention: delete windows received longer ago than this.")
@click.option("--max-windows", type=click.IntRange(1), help="Retention: keep only this many most recent windows.")
@click.option("--mqtt", "mqtt_url", metavar="URL",
              help="Also subscribe to the devices' topic on this broker: mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://.")
@click.option("--mqtt-topic", default="edge-runtime/+/windows", show_default=True, help="The MQTT subscription.")
@click.option("--mqtt-client-id", default="edge-runtime-collector", show_default=True,
              help="The persistent MQTT session's id: one per collector process.")
@click.option("--mqtt-ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA bundle for an mqtts:// broker (default: the system's).")
@click.option("--mqtt-cert-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Client certificate for an mqtts:// broker that wants one (mTLS); needs --mqtt-key-file.")
@click.option("--mqtt-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key of --mqtt-cert-file.")
@library_errors
def serve_command(store_url: str, host: str, port: int, tls_cert: Path | None, tls_key: Path | None,
                  max_message_bytes: int, max_age_days: float | None, max_windows: int | None, mqtt_url: str | None,
                  mqtt_topic: str, mqtt_client_id: str, mqtt_ca_file: Path | None, mqtt_cert_file: Path | None,
                  mqtt_key_file: Path | None) -> None:
    """Serve POST /v1/windows, GET /metrics and GET /healthz until interrupted (and, with --mqtt,
    ingest what devices publish to an MQTT broker)."""
    mqtt = None
    if mqtt_url is not None:
        try:
            from collector.mqtt_ingest import MqttSettings
        except ImportError as exc:
            raise click.ClickException(f"--mqtt needs paho-mqtt ({exc}): pip install 'edge-runtime[collector]'") from exc
        mqtt = MqttSettings(url=mqtt_url, topic=mqtt_topic, client_id=mqtt_client_id, ca_file=mqtt_ca_file,
                            cert_file=mqtt_cert_file, key_file=mqtt_key_file)
    retention = None
    if max_age_days is not None or max_windows is not None:
        retention = FleetRetention(max_age_seconds=max_age_days * 86400.0 if max_age_days else None,
                                   max_windows=max_windows)
    config = ServerConfig(store_url=store_url, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                          max_message_bytes=max_message_bytes, retention=retention, mqtt=mqtt)
    serve(config, announce=lambda line: click.echo(line, err=True))


@collector_command.command("add-device")
@click.argument("device_id")
@click.option("--public-key", required=True, metavar="KEY",
              help="The device's public key, ed25519:<base64> (printed by 'edge-runtime device init').")
@_store_option
@library_errors
def add_device_command(device_id: str, public_key: str, store_url: str) -> None:
    """Register a device by its public key (again after a removal: it is accepted again)."""
    store = open_store(store_url)
    try:
        register_device(store, device_id, public_key, now=time.time())
    finally:
        store.close()
    click.echo(f"device '{device_id}' added")


@collector_command.command("remove-device")
@click.argument("device_id")
@_store_option
@library_errors
def remove_device_command(device_id: str, store_url: str) -> None:
    """Refuse a device's messages from now on (its windows stay)."""
    store = open_store(store_url)
    try:
        store.remove_device(device_id)
    finally:
        store.close()
    click.echo(f"device '{device_id}' removed")


@collector_command.command("add-model")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@_store_option
@library_errors
def add_model_command(bundle: Path, store_url: str) -> None:
    """Register a bundle's model (schema, reference profile) for the fleet views to judge drift against."""
    store = open_store(store_url)
    try:
        records = register_bundle(store, bundle, now=time.time())
    finally:
        store.close()
    first = records[0]
    shas = ", ".join(r.sha256[:12] for r in records)
    click.echo(f"model '{first.name}' version {first.version} added (sha256 {shas})")
