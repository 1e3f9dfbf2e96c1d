"""The HTTP(S) transport: ``POST {url}/v1/windows``, one message a request (the only module here
that touches the network).

Standard library only (``urllib``), so the device install gains no dependency.
Certificates are checked by default, against ``ca_file`` when given, else
the system's store. Redirects are not followed: a collector answers itself.

Answers map to :class:`~edge_runtime.sync.transport.Delivery`. Only a collector's
own answer (JSON with its ``status``) may mark a window sent or refused for good: a
URL that reaches some other server (a 404 page, a proxy's 200) must not empty the
outbox, so it is retried, with a hint to check the URL.

=========================================================  ==========
2xx with ``status`` stored, duplicate or part-stored        SENT
401, 403, certificate failures                              AUTH
400, 413, 422 with ``status`` rejected                      PERMANENT
413 from anything (a proxy's limit)                         PERMANENT
any other answer, 408, 425, 429, 5xx, network failures      RETRY
=========================================================  ==========
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
_ACCEPTED = frozenset({"stored", "duplicate", "part-stored"})
_REFUSED = frozenset({400, 413, 422})
_MAX_ANSWER_BYTES = 64 * 1024


def classify_status(status: int, answer: str | None) -> Delivery:
    """The delivery outcome of an HTTP status and the ``status`` of the collector's JSON answer.

    >>> [classify_status(s, a).value for s, a in ((200, "stored"), (400, "rejected"), (401, None),
    ...                                            (413, None), (429, None), (503, None))]
    ['sent', 'permanent', 'auth', 'permanent', 'retry', 'retry']
    >>> [classify_status(s, a).value for s, a in ((200, None), (404, None), (405, None), (400, None))]
    ['retry', 'retry', 'retry', 'retry']
    """
    if 200 <= status < 300:
        return Delivery.SENT if answer in _ACCEPTED else Delivery.RETRY
    if status in (401, 403):
        return Delivery.AUTH
    if status == 413 or (status in _REFUSED and answer == "rejected"):
        return Delivery.PERMANENT
    return Delivery.RETRY


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


def _answer(body: bytes) -> dict[str, Any] | None:
    """The collector's ``{"status", "detail"}`` answer, or None when the body is something else."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return answer if isinstance(answer, dict) and isinstance(answer.get("status"), str) else None


def _result(status: int, body: bytes, endpoint: str) -> SendResult:
    answer = _answer(body)
    outcome = classify_status(status, answer["status"] if answer else None)
    if answer is not None:
        detail = ": ".join(str(answer[k]) for k in ("status", "detail") if answer.get(k))
    else:
        detail = " ".join(body[:120].decode("utf-8", "replace").split())
        if outcome is Delivery.RETRY and status < 500 and status not in (408, 425, 429):
            # Not a collector: a wrong URL must not mark windows sent or refuse them for good.
            detail = (f"{endpoint} did not answer as an edge-runtime collector (check the URL)"
                      + (f": {detail}" if detail else ""))
    return SendResult(outcome, status, f"HTTP {status} {detail}".strip())


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
            return _result(status, body, self.endpoint)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                return SendResult(Delivery.AUTH, None, f"certificate check failed for {self.endpoint}: "
                                                       f"{exc.reason.verify_message}")
            return SendResult(Delivery.RETRY, None, f"cannot reach {self.endpoint}: {exc.reason}")
        except (TimeoutError, socket.timeout) as exc:
            return SendResult(Delivery.RETRY, None, f"no answer from {self.endpoint} in {self.timeout_s:g} s ({exc})")
        except (OSError, http.client.HTTPException) as exc:
            return SendResult(Delivery.RETRY, None, f"connection to {self.endpoint} failed: {exc!r}")
        return _result(status, body, self.endpoint)

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""
