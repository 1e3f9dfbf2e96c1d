"""Serving: a verified bundle, its input checks, the onnxruntime session and the answers.

Lower modules first: ``schema`` and ``results`` (plain values), ``bundle`` (reads and
verifies a bundle directory), ``inputs`` (checks and lays out rows), ``session`` (the
only module that imports onnxruntime), ``model`` (one bundle loaded into a session).
The :class:`~edge_runtime.runtime.Runtime` composes them with monitoring and budgets.

Nothing is imported here, so that importing one module does not load onnxruntime.
"""

__all__: list[str] = []
