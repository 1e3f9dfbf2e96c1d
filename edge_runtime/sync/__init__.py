"""Reporting upstream: device keys, the wire format, the outbox and the sync loop.

Needs the ``sync`` extra (``cryptography`` for Ed25519): ``pip install 'edge-runtime[sync]'``.
"""

__all__: list[str] = []
