"""A device's Ed25519 key pair: the private key in a PEM file, the public key as text.

The private key file is PEM (PKCS#8, unencrypted), mode 0600, with the device id
on a line of its own before the PEM block, so one file says which device it is::

    edge-runtime-device-id: gateway-7
    -----BEGIN PRIVATE KEY-----
    ...

A public key is written ``ed25519:<base64 of its 32 raw bytes>``: one line to paste
into ``edge-runtime collector add-device``. The collector stores only public keys,
so a copy of its database cannot sign as a device.

Examples
--------
>>> import tempfile, pathlib
>>> key = DeviceKey.generate("gateway-7")
>>> path = pathlib.Path(tempfile.mkdtemp()) / "device.key"
>>> key.save(path)
>>> oct(path.stat().st_mode & 0o777)
'0o600'
>>> loaded = DeviceKey.load(path)
>>> loaded.device_id, loaded.public_text == key.public_text, key.public_text.startswith("ed25519:")
('gateway-7', True, True)
>>> verify_signature(key.public_text, key.sign(b"window"), b"window")
>>> verify_signature(key.public_text, key.sign(b"window"), b"altered")
Traceback (most recent call last):
...
edge_runtime.errors.SignatureError: the signature does not match the message (device key ed25519:...)
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import warnings
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.config import DEVICE_ID
from edge_runtime.errors import ConfigError, SignatureError

__all__ = ["PUBLIC_KEY_PREFIX", "DeviceKey", "check_device_id", "parse_public_key", "verify_signature"]

PUBLIC_KEY_PREFIX = "ed25519:"
SIGNATURE_BYTES = 64
_ID_LINE = "edge-runtime-device-id: "


def check_device_id(device_id: object) -> str:
    """Return ``device_id`` if it is a valid id, else raise ConfigError naming it.

    >>> check_device_id("kiosk-12")
    'kiosk-12'
    >>> check_device_id("a/b")
    Traceback (most recent call last):
    ...
    edge_runtime.errors.ConfigError: device id 'a/b' is not valid: use 1-128 letters, digits and . _ : - (starting with a letter or digit)
    """
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        raise ConfigError(f"device id {device_id!r} is not valid: use 1-128 letters, digits and . _ : - "
                          "(starting with a letter or digit)")
    return device_id


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read a public key written ``ed25519:<base64 of 32 bytes>``; ConfigError if it is not one."""
    raw = b""
    if isinstance(text, str) and text.startswith(PUBLIC_KEY_PREFIX):
        try:
            raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != 32:
        shown = text if len(str(text)) <= 80 else str(text)[:77] + "..."
        raise ConfigError(f"public key {shown!r} is not an Ed25519 key written "
                          f"'{PUBLIC_KEY_PREFIX}<base64 of 32 bytes>'")
    return Ed25519PublicKey.from_public_bytes(raw)


def _public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


# A collector checks every message of a device with the same key: parsed once, not per message.
_parsed_public_key = functools.lru_cache(maxsize=65536)(parse_public_key)


def verify_signature(public_text: str, signature: bytes, data: bytes) -> None:
    """Check that ``signature`` is the key's signature of ``data``; raise SignatureError if not."""
    key = _parsed_public_key(public_text)
    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise SignatureError(f"the signature does not match the message (device key {public_text[:16]}...)") from exc



_WARNED: set[tuple[str, int]] = set()


def _warn_if_shared(path: Path, device_id: str) -> None:
    """Warn (as ssh refuses) when users other than the owner may read the key file: anyone who
    reads it can sign windows as the device. Used all the same: the owner may mean it."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:  # pragma: no cover - it was just read
        return
    if os.name == "posix" and mode & 0o077 and (str(path), mode) not in _WARNED:
        _WARNED.add((str(path), mode))  # once a process: a sync loop reads its key at every start
        warnings.warn(f"key file {str(path)!r} can be read by other users (mode {mode:04o}): whoever reads it "
                      f"can sign as device '{device_id}'; chmod 600 {path}", RuntimeWarning, stacklevel=3)

class DeviceKey:
    """A device's id and Ed25519 private key.

    Parameters
    ----------
    device_id : str
    private_key : Ed25519PrivateKey
    """

    __slots__ = ("device_id", "_private", "public_text")

    def __init__(self, device_id: str, private_key: Ed25519PrivateKey) -> None:
        self.device_id = check_device_id(device_id)
        self._private = private_key
        self.public_text = _public_text(private_key.public_key())

    @classmethod
    def generate(cls, device_id: str) -> DeviceKey:
        """A new random key pair for ``device_id``."""
        return cls(device_id, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> DeviceKey:
        """Read a key file written by :meth:`save`.

        Raises
        ------
        ConfigError
            The file is missing, unreadable, not a PEM Ed25519 private key, or has no device id line.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {str(path)!r}: {exc.strerror or exc}") from exc
        first = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        if not first.startswith(_ID_LINE.strip()):
            raise ConfigError(f"key file {str(path)!r} has no '{_ID_LINE.strip()} ID' first line "
                              "(make one with: edge-runtime device init)")
        device_id = first[len(_ID_LINE.strip()):].strip()
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"key file {str(path)!r} holds no readable unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"key file {str(path)!r} holds a {type(private).__name__}, not an Ed25519 key")
        _warn_if_shared(path, device_id)
        return cls(device_id, private)

    def save(self, path: str | Path) -> None:
        """Write the key file with mode 0600; never overwrites an existing file.

        Raises
        ------
        ConfigError
            The file exists already, or cannot be written.
        """
        path = Path(path)
        pem = self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        try:
            # O_EXCL: never replace a device's identity by accident; 0600 from the first byte.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise ConfigError(f"key file {str(path)!r} exists already; remove it first to make a new key") from exc
        except OSError as exc:
            raise ConfigError(f"cannot write the key file {str(path)!r}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "wb") as out:
            out.write(f"{_ID_LINE}{self.device_id}\n".encode("utf-8") + pem)
            out.flush()
            os.fsync(out.fileno())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:  # never the private key
        return f"DeviceKey(device_id={self.device_id!r}, public={self.public_text!r})"
