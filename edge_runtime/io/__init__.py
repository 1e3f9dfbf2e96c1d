"""Row files: reading CSV and JSON lines, writing predictions."""

__all__: list[str] = []
