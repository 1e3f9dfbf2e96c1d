"""``edge-runtime collector add-device / remove-device / add-model``: happy paths and exact error lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import collector_command
from collector.stores import open_store
from edge_runtime.sync.keys import DeviceKey

KEY = DeviceKey.generate("kiosk-1").public_text


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fleet.db"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(collector_command, list(args))
    return result.exit_code, result.output


def test_add_and_remove_a_device(store_url: str) -> None:
    assert run("add-device", "kiosk-1", "--public-key", KEY, "--store", store_url) == (0, "device 'kiosk-1' added\n")
    assert run("remove-device", "kiosk-1", "--store", store_url) == (0, "device 'kiosk-1' removed\n")
    store = open_store(store_url)
    device = store.device("kiosk-1")
    store.close()
    assert device is not None and device.removed and device.public_key == KEY


@pytest.mark.parametrize(("args", "line"), [
    (("add-device", "kiosk-1", "--public-key", "ed25519:short"),
     "Error: public key 'ed25519:short' is not an Ed25519 key written 'ed25519:<base64 of 32 bytes>'"),
    (("add-device", "a/b", "--public-key", KEY),
     "Error: device id 'a/b' is not valid: use 1-128 letters, digits and . _ : - (starting with a letter or digit)"),
    (("remove-device", "nobody"), "Error: device 'nobody' is not registered with this collector"),
])
def test_device_errors_are_one_line(store_url: str, args: tuple[str, ...], line: str) -> None:
    assert run(*args, "--store", store_url) == (1, line + "\n")


def test_an_unknown_store_scheme_is_one_line() -> None:
    assert run("remove-device", "kiosk-1", "--store", "mongodb://fleet") == (
        1, "Error: store URL 'mongodb://fleet' has an unknown scheme 'mongodb'; use sqlite:///PATH or "
           "postgresql://USER@HOST:PORT/DB\n")


def test_add_model_registers_every_model_file_of_the_bundle(store_url: str, cancer_bundle: Path) -> None:
    code, output = run("add-model", str(cancer_bundle), "--store", store_url)
    assert code == 0, output
    manifest = json.loads((cancer_bundle / "manifest.json").read_text())
    store = open_store(store_url)
    models = store.models()
    store.close()
    assert {m.sha256 for m in models} == {manifest["files"]["model.onnx"]["sha256"]} | {
        manifest["files"][v["file"]]["sha256"] for v in manifest.get("variants", {}).values() if isinstance(v, dict)}
    main = next(m for m in models if m.sha256 == manifest["files"]["model.onnx"]["sha256"])
    assert (main.name, main.version) == ("cancer", "1.0")
    assert main.manifest["input_schema"] == manifest["input_schema"]
    profile_file = manifest["reference"]["sketches"]["file"]
    assert main.reference_profile == (cancer_bundle / profile_file).read_bytes()
    assert output.startswith(f"model 'cancer' version 1.0 added (sha256 {main.sha256[:12]}")
    assert all(m.sha256[:12] in output for m in models)


def test_add_model_refuses_an_altered_bundle(store_url: str, cancer_bundle: Path, tmp_path: Path) -> None:
    altered = tmp_path / "altered"
    shutil.copytree(cancer_bundle, altered)
    with open(altered / "model.onnx", "ab") as f:
        f.write(b"\0")
    code, output = run("add-model", str(altered), "--store", store_url)
    assert code == 1
    assert output.startswith("Error: bundle file 'model.onnx' ")
    assert output.count("\n") == 1


def test_serve_refuses_half_a_tls_pair(store_url: str, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert run("serve", "--store", store_url, "--tls-cert", str(cert)) == (
        1, "Error: --tls-cert and --tls-key go together: give both to serve HTTPS, or neither\n")


_BLOCKED = """
import sys
for name in ("starlette", "uvicorn", "prometheus_client", "cryptography"):
    sys.modules[name] = None  # as if not installed
from edge_runtime.cli import main
main(sys.argv[1:], prog_name="edge-runtime")
"""


def test_the_collector_command_names_its_extra_when_it_is_missing() -> None:
    import subprocess
    import sys
    from importlib import metadata

    result = subprocess.run([sys.executable, "-c", _BLOCKED, "collector", "serve", "--store", "x"],
                            capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 1
    registered = any(ep.name == "collector" for ep in metadata.entry_points(group="edge_runtime.commands"))
    missing = " (missing starlette, uvicorn, prometheus-client, cryptography)" if registered else ""
    assert result.stderr == (f"Error: 'edge-runtime collector' needs the collector extra, which is not installed"
                             f"{missing}: pip install 'edge-runtime[collector]'\n")


def test_serve_refuses_a_bad_mqtt_url(store_url: str) -> None:
    assert run("serve", "--store", store_url, "--mqtt", "http://broker:1883") == (
        1, "Error: MQTT URL 'http://broker:1883' must start mqtt:// or mqtts://\n")


def test_serve_names_a_port_in_use_and_a_bad_certificate(store_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run("serve", "--store", store_url, "--port", str(port))
    assert (code, output.splitlines()[-1]) == (1, f"Error: cannot listen on 127.0.0.1:{port}: Address already in use")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    code, output = run("serve", "--store", store_url, "--port", "0", "--tls-cert", str(bad), "--tls-key", str(bad))
    assert code == 1 and output.splitlines()[-1].startswith(f"Error: cannot use the TLS certificate '{bad}'")
