"""The HTTP(S) transport: ``POST {url}/v1/windows``, one message a request (the only module here
that touches the network).

Standard library only (``urllib``), so the device install gains no dependency.
Certificates are checked by default, against ``ca_file`` when given, else
the system's store. Redirects are not followed: a collector answers itself.

Answers map to :class:`~edge_runtime.sync.transport.Delivery`:

==============================  ==========
200-299                          SENT
401, 403, certificate failures   AUTH
408, 425, 429, 5xx, network      RETRY
other 4xx (400, 413, 422, ...)   PERMANENT
==============================  ==========
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError
from edge_runtime.sync.transport import Delivery, SendResult

__all__ = ["CONTENT_TYPE", "HttpTransport", "classify_status"]

CONTENT_TYPE = "application/vnd.edge-runtime.sync"
_RETRY_4XX = frozenset({408, 425, 429})
_MAX_ANSWER_BYTES = 64 * 1024


def classify_status(status: int) -> Delivery:
    """The delivery outcome of an HTTP status.

    >>> [classify_status(s).value for s in (200, 400, 401, 413, 429, 503)]
    ['sent', 'permanent', 'auth', 'permanent', 'retry', 'retry']
    """
    if 200 <= status < 300:
        return Delivery.SENT
    if status in (401, 403):
        return Delivery.AUTH
    if 400 <= status < 500 and status not in _RETRY_4XX:
        return Delivery.PERMANENT
    return Delivery.RETRY


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


def _detail(body: bytes) -> str:
    """The collector's ``{"status", "detail"}`` answer in a few words, or its raw start."""
    try:
        answer = json.loads(body.decode("utf-8"))
        if isinstance(answer, dict):
            return ": ".join(str(answer[k]) for k in ("status", "detail") if answer.get(k))
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return body[:200].decode("utf-8", "replace").strip()


class HttpTransport:
    """POST each message to ``{url}/v1/windows``.

    Parameters
    ----------
    url : str
        The collector's base URL, ``http://`` or ``https://``.
    timeout_s : float
        Seconds to wait for connecting and for the answer.
    ca_file : Path, optional
        CA certificates for an ``https://`` collector (the system's otherwise).

    Raises
    ------
    ConfigError
        The URL is not HTTP(S), or the CA file cannot be read.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0, ca_file: Path | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the HTTP transport needs an http:// or https:// URL, got {url!r}")
        self.endpoint = url.rstrip("/") + "/v1/windows"
        self.timeout_s = timeout_s
        handlers: list[Any] = [_NoRedirects()]
        if url.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file '{ca_file}' cannot be read: {exc}") from exc
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def send(self, message: bytes) -> SendResult:
        """POST one message; every failure becomes a :class:`SendResult`, never an exception."""
        request = urllib.request.Request(self.endpoint, data=message, method="POST",
                                         headers={"Content-Type": CONTENT_TYPE})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = int(response.status)
                body = response.read(_MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            try:
                body = exc.read(_MAX_ANSWER_BYTES)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                exc.close()
            return SendResult(classify_status(status), status, f"HTTP {status} {_detail(body)}".strip())
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                return SendResult(Delivery.AUTH, None, f"certificate check failed for {self.endpoint}: "
                                                       f"{exc.reason.verify_message}")
            return SendResult(Delivery.RETRY, None, f"cannot reach {self.endpoint}: {exc.reason}")
        except (TimeoutError, socket.timeout) as exc:
            return SendResult(Delivery.RETRY, None, f"no answer from {self.endpoint} in {self.timeout_s:g} s ({exc})")
        except (OSError, http.client.HTTPException) as exc:
            return SendResult(Delivery.RETRY, None, f"connection to {self.endpoint} failed: {exc!r}")
        return SendResult(classify_status(status), status, f"HTTP {status} {_detail(body)}".strip())

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""
