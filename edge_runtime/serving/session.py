"""The onnxruntime session: the only module that imports onnxruntime.

Examples
--------
>>> from edge_runtime.serving.session import onnxruntime_version
>>> onnxruntime_version().count(".") >= 1
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime.config import SessionConfig
from edge_runtime.errors import BundleError, InferenceError

__all__ = ["OnnxSession", "SingleRowBinding", "onnxruntime_version"]

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def onnxruntime_version() -> str:
    """Return the installed onnxruntime version."""
    return str(ort.__version__)


def _session_options(config: SessionConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Errors only: converters declare some output shapes loosely ({-1, 2} for a {N, 1}
    # answer), and onnxruntime then prints a coloured warning on every run to stderr,
    # which breaks a CLI's one-line errors and a device's logs; failures still raise.
    options.log_severity_level = 3
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_SEQUENTIAL
        if config.execution_mode == "sequential"
        else ort.ExecutionMode.ORT_PARALLEL
    )
    options.graph_optimization_level = _OPTIMIZATION[config.graph_optimization]
    spin = "1" if config.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


class SingleRowBinding:
    """Buffers bound once to the session, so a one-row call allocates nothing.

    Write the row into :attr:`input` and call :meth:`run`; the results appear in
    :attr:`outputs`, overwritten by the next call.

    Attributes
    ----------
    input : numpy.ndarray
        float32 array of shape (1, n_features) bound as the model input.
    outputs : dict of str to numpy.ndarray
        Preallocated arrays bound to the numeric outputs.
    """

    def __init__(self, session: ort.InferenceSession, input_name: str, width: int,
                 templates: Mapping[str, np.ndarray]) -> None:
        self.input = np.zeros((1, width), dtype=np.float32)
        self.outputs = {name: np.empty_like(t) for name, t in templates.items()}
        binding = session.io_binding()
        binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(self.input))
        for name, array in self.outputs.items():
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
        self._binding = binding  # keeps the OrtValues (and so the buffers) alive
        # InferenceSession.run_with_iobinding spends ~30 µs in Python checks for
        # WebGPU graph capture (onnxruntime 1.2x/1.3x); the C++ method it ends in
        # takes ~2.5 µs. Use that method when present, the public one otherwise.
        c_session = getattr(session, "_sess", None)
        c_binding = getattr(binding, "_iobinding", None)
        run_options = ort.RunOptions()
        if c_session is not None and c_binding is not None:
            self._call: Any = lambda: c_session.run_with_iobinding(c_binding, run_options)
        else:  # pragma: no cover - depends on onnxruntime internals
            self._call = lambda: session.run_with_iobinding(binding, run_options)

    def run(self) -> None:
        """Run the model on :attr:`input`, filling :attr:`outputs`."""
        try:
            self._call()
        except Exception as exc:  # onnxruntime raises its own unrelated classes
            raise InferenceError(f"onnxruntime failed: {exc}") from exc


class OnnxSession:
    """An onnxruntime CPU session with edge defaults.

    Parameters
    ----------
    model_path : Path
        The ONNX file.
    config : SessionConfig
        Threading and optimisation options.
    """

    def __init__(self, model_path: Path, config: SessionConfig) -> None:
        try:
            self._session = ort.InferenceSession(
                str(model_path), _session_options(config), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unrelated classes
            raise BundleError(f"onnxruntime cannot load '{model_path}': {exc}") from exc
        self.input_names: tuple[str, ...] = tuple(i.name for i in self._session.get_inputs())
        self.output_names: tuple[str, ...] = tuple(o.name for o in self._session.get_outputs())

    def input_types(self) -> dict[str, str]:
        """Map each input name to its ONNX type, e.g. ``'tensor(float)'``."""
        return {i.name: i.type for i in self._session.get_inputs()}

    def input_shapes(self) -> dict[str, list[Any]]:
        """Map each input name to its declared shape (None or a name for free dims)."""
        return {i.name: list(i.shape) for i in self._session.get_inputs()}

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on a batch.

        Raises
        ------
        InferenceError
            onnxruntime failed, e.g. on an unexpected shape or an unknown category
            that the model's encoder refuses.
        """
        try:
            return list(self._session.run(list(output_names), dict(feeds)))
        except Exception as exc:  # onnxruntime raises its own unrelated classes
            raise InferenceError(f"onnxruntime failed: {exc}") from exc

    def raw_run(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """``InferenceSession.run(None, feeds)`` with nothing around it: the bare model call,
        the reference point of benchmarks."""
        return self._session.run(None, feeds)

    def bind_single_row(self, input_name: str, width: int,
                        templates: Mapping[str, np.ndarray]) -> SingleRowBinding:
        """Bind preallocated buffers for one-row calls.

        Parameters
        ----------
        input_name : str
            The float tensor input.
        width : int
            Number of features.
        templates : mapping of str to numpy.ndarray
            For each numeric output to bind, an array of its one-row shape and dtype.
        """
        return SingleRowBinding(self._session, input_name, width, templates)
