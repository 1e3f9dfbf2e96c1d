"""What the device-side sync tests share: real windows, and a stand-in collector on 127.0.0.1.

The stand-in is a small stdlib HTTP server that answers as the spec says (200 /
400 / 401 / 422 / 500, or slowly) and reads every message with the real
``payload.read_message``, ``Message.verify`` and ``assemble``: the tests check
real signed bytes. The real collector is built elsewhere; this is only its
stand-in for the device's tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import PayloadError, SignatureError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task

_INPUTS = InputSchema(features=tuple(FeatureSpec(name=f"x{i}") for i in range(4)))
_OUTPUTS = OutputSchema(task=Task.REGRESSION, score_output="y")


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def profile_bytes(rows: int, seed: int, stride: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    profile = Profile.for_schema(_INPUTS, _OUTPUTS, stride=stride)
    profile.update_matrix(rng.normal(size=(rows, 4)).astype(np.float32), scores=rng.normal(size=rows),
                          latency=rng.uniform(5, 50, size=rows))
    return profile.to_bytes()


def window(rows: int = 2000, seed: int = 0, stride: int = 1, closed_at: float = 1_700_000_000.0,
           sha: str = "ab" * 32) -> dict[str, Any]:
    """A closed window's record as the monitor saves it, with a real profile."""
    return {"seq": None, "model": "m", "version": "1", "model_sha256": sha, "opened_at": closed_at - 60,
            "closed_at": closed_at, "rows": rows, "rejected": 1,
            "quality": {"features": {"x0": {"missing": 1, "out_of_range": 2}}, "rejected": {"nan": 1}, "unlogged": 0},
            "latency": {"p50_us": 1.0}, "summary": None, "profile": profile_bytes(rows, seed, stride), "partial": 0,
            "budget": {"level": "normal", "seq": seed}}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a device that timed out closed its end: the late answer has nowhere to go


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class CollectorStandIn:
    """A stand-in collector: verifies, assembles and counts what it receives.

    Attributes
    ----------
    mode : str
        ``ok``; ``500``, ``401`` (every message answered so); ``slow`` (waits ``slow_s`` first).
    reject_seqs : set of int
        Windows (by seq_first) answered 422, as an unsupported payload would be.
    stored : dict
        Each window's summary by idempotency key, stored once.
    arrivals : Counter
        How many times each window arrived complete (a re-sent one counts twice).
    """

    def __init__(self, public_text: str, *, tls: tuple[Path, Path] | None = None) -> None:
        self.public_text = public_text
        self.scheme = "https" if tls else "http"
        self.mode = "ok"
        self.slow_s = 2.0
        self.reject_seqs: set[int] = set()
        self.max_message_bytes = 1 << 30  # larger messages get 413, as a collector's --max-message-bytes does
        self.stored: dict[tuple[str, str, str, int], Any] = {}
        self.arrivals: Counter[tuple[str, str, str, int]] = Counter()
        self.requests = 0
        self._parts: dict[tuple[Any, ...], dict[int, Any]] = {}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = standin.receive(self.path, self.headers.get("Content-Type", ""), data)
                page = isinstance(answer, str)  # a server that is no collector answers a web page
                body = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if page else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # (certificate, key) files
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, path: str, content_type: str, data: bytes) -> tuple[int, dict[str, str] | str]:
        from edge_runtime.sync.payload import assemble, read_message

        with self._lock:
            self.requests += 1
            mode = self.mode
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "500":
            return 500, {"status": "error", "detail": "collector store unavailable"}
        if len(data) > self.max_message_bytes:
            return 413, {"status": "rejected", "detail": f"message of {len(data)} bytes over the limit"}
        if mode in ("404", "405", "200-page"):  # the URL reaches some other web server
            return (200 if mode == "200-page" else int(mode)), "<html><body>Not the collector</body></html>"
        if path != "/v1/windows" or content_type != "application/vnd.edge-runtime.sync":
            return 400, {"status": "rejected", "detail": f"wrong path or type {path} {content_type}"}
        try:
            message = read_message(data)
            message.verify(self.public_text)
        except PayloadError as exc:
            return 400, {"status": "rejected", "detail": str(exc)}
        except SignatureError as exc:
            return 401, {"status": "unauthorized", "detail": str(exc)}
        if mode == "401":
            return 401, {"status": "unauthorized", "detail": "unknown device"}
        header = message.header
        if header["seq_first"] in self.reject_seqs:
            return 422, {"status": "rejected", "detail": "unknown fields"}
        with self._lock:
            parts = self._parts.setdefault((message.key, header["document_sha256"]), {})
            parts[header["part"]] = message
            if len(parts) < header["parts"]:
                return 200, {"status": "part-stored", "detail": ""}
            del self._parts[(message.key, header["document_sha256"])]
            summary = assemble(list(parts.values()))
            self.arrivals[summary.key] += 1
            if summary.key in self.stored:
                return 200, {"status": "duplicate", "detail": ""}
            self.stored[summary.key] = summary
            return 200, {"status": "stored", "detail": ""}

    def seqs(self) -> list[tuple[int, int]]:
        """The (seq_first, seq_last) of every stored window, in order."""
        with self._lock:
            return sorted((s.seq_first, s.seq_last) for s in self.stored.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
