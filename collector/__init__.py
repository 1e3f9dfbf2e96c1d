"""The fleet collector: receives signed window summaries from devices, stores them once each.

A third top-level package beside ``edge_runtime`` (the device) and ``converters``
(the workstation), installed with ``pip install 'edge-runtime[collector]'``. It reads
the device's portable formats (``edge_runtime.sync.payload``, profile and sketch
bytes); the device never imports it.
"""

from __future__ import annotations

__all__: list[str] = []
