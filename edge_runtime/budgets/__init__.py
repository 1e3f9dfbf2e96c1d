"""Budgets: latency, CPU and memory promises, and the service levels that keep them.

``resources`` is the only module that imports psutil; ``policy`` decides the level.
"""

__all__: list[str] = []
