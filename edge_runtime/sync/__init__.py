"""Reporting upstream: the outbox, device keys, the wire format, transports and the sync loop."""

__all__: list[str] = []
