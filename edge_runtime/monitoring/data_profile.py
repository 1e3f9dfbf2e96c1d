"""A data profile: the sketches of every feature and of the model's answers.

The same class holds the reference profile that export writes into a bundle
(``reference.bin``) and each live monitoring window, so the two compare one to
one and windows from many devices merge.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.data_profile import Profile
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> inputs = InputSchema(features=(FeatureSpec(name="x"),))
>>> outputs = OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=(0, 1))
>>> profile = Profile.for_schema(inputs, outputs)
>>> _ = profile.update_matrix(np.array([[1.0], [2.0], [3.0]], dtype=np.float32))
>>> _ = profile.update_outputs([0, 1, 1], np.array([0.9, 0.8, 0.7]))
>>> again = Profile.from_bytes(profile.to_bytes())
>>> again.rows, again.features["x"].count, again.predictions.counts
(3, 3, {'0': 1, '1': 2})
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.sketches import (
    DEFAULT_K,
    CategoricalSketch,
    NumericSketch,
    add_thinned_blocks,
    block_moments,
    sketch_from_bytes,
    thin_block,
)
from edge_runtime.serving.bundle import Bundle
from edge_runtime.serving.schema import FeatureKind, InputSchema, OutputSchema, Task

__all__ = ["PROFILE_FILE", "Profile", "load_reference"]

PROFILE_FILE = "reference.bin"
_MAGIC = b"ERPF"
_VERSION = 1
_HEAD = struct.Struct("<4sBI")  # magic, version, header length
_ENTRY_TEXT: dict[tuple[tuple[str, ...], bool], list[str]] = {}  # feature list -> each entry's JSON, less its length


class Profile:
    """Sketches of a stream of rows: one per feature, plus predictions, scores and latency.

    Attributes
    ----------
    features : dict of str to NumericSketch or CategoricalSketch
        In schema order.
    predictions : CategoricalSketch or None
        Predicted class counts (classifiers).
    scores : NumericSketch
        Probability of the predicted class (classifiers) or the predicted value (regressors).
    latency : NumericSketch
        Per-prediction latency in microseconds (live windows only).
    rows : int
        Rows profiled.
    """

    def __init__(self, features: dict[str, NumericSketch | CategoricalSketch],
                 predictions: CategoricalSketch | None, scores: NumericSketch,
                 latency: NumericSketch, rows: int = 0) -> None:
        self.features = features
        self.predictions = predictions
        self.scores = scores
        self.latency = latency
        self.rows = rows
        # (lows, highs) of the last block given to update_matrix, per feature: the
        # monitor counts out-of-range values only where these leave the training range.
        self.block_range: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def for_schema(cls, inputs: InputSchema, outputs: OutputSchema, *, k: int = DEFAULT_K,
                   stride: int = 1) -> Profile:
        """An empty profile shaped for a model's schemas; numeric sketches thin by ``stride``."""
        features: dict[str, NumericSketch | CategoricalSketch] = {
            f.name: CategoricalSketch() if f.kind is FeatureKind.CATEGORICAL else NumericSketch(k, stride)
            for f in inputs.features
        }
        predictions = CategoricalSketch() if outputs.task is Task.CLASSIFICATION else None
        return cls(features, predictions, NumericSketch(k, stride), NumericSketch(k, stride))

    # ---------------------------------------------------------------- update
    def update_matrix(self, matrix: np.ndarray, *, scores: np.ndarray | None = None,
                      latency: np.ndarray | None = None,
                      more: Sequence[tuple[NumericSketch, np.ndarray]] = ()) -> Profile:
        """Add rows of an all-numeric float32 matrix, columns in schema order (one block).

        ``scores`` (top score or predicted value per row), ``latency`` (µs per
        row) and ``more`` (further per-row columns, each with the sketch that
        takes it), when given, join the same pass. The block is copied once,
        transposed (one row per sketch); each row is sorted in chunks and
        thinned (when the sketches thin), and its range and moments come from
        the sorted copy.
        The sketches then take their rows with one vectorized merge of the
        moments and one KLL update each. Columns holding NaN take the general
        path.

        Examples
        --------
        >>> import numpy as np
        >>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
        >>> inputs = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
        >>> outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
        >>> profile = Profile.for_schema(inputs, outputs, stride=4)
        >>> block = np.random.default_rng(1).normal(size=(1000, 2)).astype(np.float32)
        >>> block[3, 1] = np.nan
        >>> _ = profile.update_matrix(block, scores=block[:, 0] * 2, latency=np.full(1000, 7.0))
        >>> profile.features["a"].count, profile.features["a"].kll.n, profile.scores.count, profile.latency.mean
        (1000, 250, 1000, 7.0)
        >>> profile.features["b"].count, profile.features["b"].missing
        (999, 1)
        """
        n, width = matrix.shape
        if n == 0:
            return self
        sketches: list[NumericSketch] = []
        for sketch in self.features.values():
            assert isinstance(sketch, NumericSketch), "update_matrix takes all-numeric profiles"
            sketches.append(sketch)
        # Per-row columns besides the features: each a sketch and its values, one row of the block.
        extra = [(sketch, values) for sketch, values in ((self.scores, scores), (self.latency, latency))
                 if values is not None]
        extra += more
        columns = np.empty((width + len(extra), n), dtype=np.float32)
        columns[:width] = matrix.T
        for row, (sketch, values) in enumerate(extra, start=width):
            columns[row] = values
            sketches.append(sketch)
        stride = sketches[0].stride
        if any(sketch.stride != stride for sketch in sketches):
            raise ValueError("update_matrix needs one stride for all its sketches")
        kept, thin_var, lows, highs = thin_block(columns, stride)
        fast_lows, fast_highs = lows, highs
        # NaN sorts last (and max() passes it on): a column holding one has a NaN high.
        nan_rows = np.isnan(highs)
        if nan_rows.any():
            # The general path counts the missing values; the column's range stays
            # unbounded here, so the monitor checks it value by value.
            for i in np.flatnonzero(nan_rows).tolist():
                sketches[i].update(columns[i])
            clean = np.flatnonzero(~nan_rows)
            columns, kept, fast_lows, fast_highs = columns[clean], kept[clean], lows[clean], highs[clean]
            sketches = [sketches[i] for i in clean.tolist()]
            lows, highs = np.where(nan_rows, -np.inf, lows), np.where(nan_rows, np.inf, highs)
        if sketches:
            # The sorted columns are a scratch copy, unless they are what the KLL sketches
            # take (stride 1): then the moments leave them be.
            means, m2s = block_moments(columns, in_place=kept is not columns)
            add_thinned_blocks(sketches, kept, n=n, thin_var=thin_var, means=means, m2s=m2s, lows=fast_lows,
                               highs=fast_highs)
        self.block_range = (lows[:width], highs[:width])
        self.rows += int(n)
        return self

    def update_columns(self, columns: Sequence[Any]) -> Profile:
        """Add rows given as one array or list per feature, in schema order."""
        for sketch, column in zip(self.features.values(), columns):
            sketch.update(column)
        self.rows += len(columns[0]) if len(columns) else 0
        return self

    def update_outputs(self, labels: Sequence[Any] | None, scores: np.ndarray) -> Profile:
        """Add the model's answers: labels (classifiers) and top scores or values."""
        if self.predictions is not None and labels is not None:
            self.predictions.update_counts({str(k): n for k, n in Counter(labels).items()})
        self.scores.update(scores)
        return self

    def update_latency(self, latency_us: np.ndarray) -> Profile:
        """Add per-prediction latencies in microseconds."""
        self.latency.update(latency_us)
        return self

    def merge(self, other: Profile) -> Profile:
        """Fold another profile of the same model into this one."""
        if list(other.features) != list(self.features):
            raise ValueError("cannot merge profiles of different feature sets")
        for name, sketch in self.features.items():
            sketch.merge(other.features[name])  # type: ignore[arg-type]
        if self.predictions is not None and other.predictions is not None:
            self.predictions.merge(other.predictions)
        self.scores.merge(other.scores)
        self.latency.merge(other.latency)
        self.rows += other.rows
        return self

    # ----------------------------------------------------------------- bytes
    def to_bytes(self) -> bytes:
        """Portable bytes: a tag, a version, a JSON table of contents, then each sketch's bytes."""
        sketches = [*self.features.values(), *((self.predictions,) if self.predictions is not None else ()),
                    self.scores, self.latency]
        blobs = [sketch.to_bytes() for sketch in sketches]
        # The header's JSON is the same from window to window but for the rows and the
        # lengths: its text is kept per feature list, and only the numbers are written.
        names = tuple(self.features)
        parts = _ENTRY_TEXT.get((names, self.predictions is not None))
        if parts is None:
            if len(_ENTRY_TEXT) > 64:
                _ENTRY_TEXT.clear()
            sections = [("feature", name) for name in names]
            sections += [("predictions", "")] if self.predictions is not None else []
            sections += [("scores", ""), ("latency", "")]
            parts = _ENTRY_TEXT[(names, self.predictions is not None)] = [
                json.dumps([section, name])[:-1] + ", " for section, name in sections]
        header = (f'{{"rows": {int(self.rows)}, "entries": ['
                  + ", ".join(f"{part}{len(blob)}]" for part, blob in zip(parts, blobs)) + "]}").encode("utf-8")
        return b"".join((_HEAD.pack(_MAGIC, _VERSION, len(header)), header, *blobs))

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Read bytes written by :meth:`to_bytes`."""
        try:
            magic, version, header_length = _HEAD.unpack_from(data)
        except struct.error as exc:
            raise BundleFormatError("profile bytes are truncated") from exc
        if magic != _MAGIC:
            raise BundleFormatError(f"not a profile (tag {magic!r})")
        if version > _VERSION:
            raise BundleFormatError(f"profile format {version} is newer than this edge-runtime reads")
        start = _HEAD.size
        try:
            header = json.loads(data[start:start + header_length].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleFormatError(f"profile header is corrupt: {exc}") from exc
        offset = start + header_length
        features: dict[str, NumericSketch | CategoricalSketch] = {}
        found: dict[str, Any] = {}
        for section, name, length in header["entries"]:
            blob = data[offset:offset + length]
            if len(blob) != length:
                raise BundleFormatError("profile bytes are truncated")
            offset += length
            sketch = sketch_from_bytes(blob)
            if section == "feature":
                features[name] = sketch
            else:
                found[section] = sketch
        if "scores" not in found or "latency" not in found:
            raise BundleFormatError("profile lacks its scores or latency sketch")
        return cls(features, found.get("predictions"), found["scores"], found["latency"], int(header["rows"]))

    def __repr__(self) -> str:
        return f"Profile(rows={self.rows}, features={len(self.features)})"


def load_reference(bundle: Bundle) -> Profile | None:
    """The reference profile of a verified bundle, or None when it has none."""
    reference = bundle.manifest.reference or {}
    name = (reference.get("sketches") or {}).get("file")
    if not name:
        return None
    if name not in bundle.manifest.files:
        raise BundleFormatError(f"the reference sketches '{name}' are not covered by the manifest checksums")
    try:
        return Profile.from_bytes((bundle.path / name).read_bytes())
    except (ValueError, KeyError, IndexError, RuntimeError) as exc:  # datasketches raises plain RuntimeError
        raise BundleFormatError(f"bundle file '{name}' is not a readable reference profile ({exc})") from exc
