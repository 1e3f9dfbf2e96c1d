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
import math
import struct
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.sketches import (
    DEFAULT_K,
    CategoricalSketch,
    NumericSketch,
    add_thinned_blocks,
    block_moments,
    empty_sketch,
    sketch_from_bytes,
    thin_block,
)
from edge_runtime.serving.bundle import Bundle
from edge_runtime.serving.schema import FeatureKind, InputSchema, OutputSchema, Task, canonical_label

__all__ = ["COUNTED_VALUES", "PROFILE_FILE", "Profile", "is_counted", "load_reference", "value_key"]

# A numeric feature whose reference holds at most this many distinct integer
# values (booleans, small counts) is monitored by exact counts, as a
# categorical: no sketch error, and no KS on a handful of ties.
COUNTED_VALUES = 20

PROFILE_FILE = "reference.bin"
_MAGIC = b"ERPF"
_VERSION = 1
_HEAD = struct.Struct("<4sBI")  # magic, version, header length
_ENTRY_TEXT: dict[tuple[tuple[str, str], ...], list[str]] = {}  # section list -> each entry's JSON, less its length


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
    class_scores : dict of str to NumericSketch
        Each class's probability, by ``str`` of the class (classifiers; a binary
        one keeps its positive, second class only). Empty in profiles written
        before they existed.

    multivariate : NumericSketch or None
        Count, mean and variance of the per-row PCA reconstruction errors (live
        windows of a bundle with a multivariate model; its quantile sketch stays
        empty: see ``monitoring/multivariate.py``).

    A numeric feature may be held by a :class:`CategoricalSketch`: it is then
    *counted* (see :data:`COUNTED_VALUES`), each value under :func:`value_key`.
    """

    def __init__(self, features: dict[str, NumericSketch | CategoricalSketch],
                 predictions: CategoricalSketch | None, scores: NumericSketch,
                 latency: NumericSketch, rows: int = 0,
                 class_scores: dict[str, NumericSketch] | None = None,
                 multivariate: NumericSketch | None = None) -> None:
        self.features = features
        self.predictions = predictions
        self.scores = scores
        self.latency = latency
        self.rows = rows
        self.class_scores = class_scores if class_scores is not None else {}
        self.multivariate = multivariate
        # (lows, highs) of the last block given to update_matrix, per feature: the
        # monitor counts out-of-range values only where these leave the training range.
        self.block_range: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def for_schema(cls, inputs: InputSchema, outputs: OutputSchema, *, k: int = DEFAULT_K,
                   stride: int = 1, counted: Sequence[str] = (), like: Profile | None = None,
                   multivariate: bool = False) -> Profile:
        """An empty profile shaped for a model's schemas; numeric sketches thin by ``stride``.

        ``counted`` names numeric features to count rather than sketch. A live
        window is shaped ``like`` its reference: the features it counts are
        counted, and it sketches the class probabilities the reference has. With
        ``multivariate``, it keeps the moments of per-row reconstruction errors too.
        """
        if like is not None:
            counted = [name for name, sketch in like.features.items() if isinstance(sketch, CategoricalSketch)]
        features: dict[str, NumericSketch | CategoricalSketch] = {
            f.name: CategoricalSketch() if f.kind is FeatureKind.CATEGORICAL or f.name in counted
            else NumericSketch(k, stride)
            for f in inputs.features
        }
        predictions = None
        class_scores: dict[str, NumericSketch] = {}
        if outputs.task is Task.CLASSIFICATION:
            predictions = CategoricalSketch()
            labels = [str(c) for c in outputs.classes]
            scored = labels[-1:] if len(labels) == 2 else labels
            if like is not None:
                scored = [label for label in scored if label in like.class_scores]
            class_scores = {label: NumericSketch(k, stride) for label in scored}
        return cls(features, predictions, NumericSketch(k, stride), NumericSketch(k, stride),
                   class_scores=class_scores, multivariate=NumericSketch(k, stride) if multivariate else None)

    def _probability_columns(self, probabilities: np.ndarray) -> list[tuple[NumericSketch, np.ndarray]]:
        """The class-probability sketches and their columns of ``probabilities`` (rows x classes)."""
        if not self.class_scores or probabilities.ndim != 2:
            return []
        sketches = list(self.class_scores.values())
        first = probabilities.shape[1] - len(sketches)  # a binary model keeps its last class only
        if first < 0:
            return []
        return [(sketch, probabilities[:, first + j]) for j, sketch in enumerate(sketches)]

    # ---------------------------------------------------------------- update
    def update_matrix(self, matrix: np.ndarray, *, scores: np.ndarray | None = None,
                      latency: np.ndarray | None = None, probabilities: np.ndarray | None = None,
                      more: Sequence[tuple[NumericSketch, np.ndarray]] = ()) -> Profile:
        """Add rows of an all-numeric float32 matrix, columns in schema order (one block).

        ``scores`` (top score or predicted value per row), ``latency`` (µs per
        row), ``probabilities`` (rows x classes) and ``more`` (further per-row
        columns, each with the sketch that takes it), when given, join the same
        pass; counted features are counted. The block is copied once,
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
        sketched = [(i, sketch) for i, sketch in enumerate(self.features.values()) if isinstance(sketch, NumericSketch)]
        sketches = [sketch for _, sketch in sketched]
        numeric = len(sketches)  # the rest are counted
        # Per-row columns besides the features: each a sketch and its values, one row of the block.
        extra = [(sketch, values) for sketch, values in ((self.scores, scores), (self.latency, latency))
                 if values is not None]
        if probabilities is not None:
            extra += self._probability_columns(probabilities)
        extra += more
        columns = np.empty((numeric + len(extra), n), dtype=np.float32)
        if numeric == width:
            columns[:numeric] = matrix.T
        else:
            columns[:numeric] = matrix[:, [i for i, _ in sketched]].T
        for row, (sketch, values) in enumerate(extra, start=numeric):
            columns[row] = values
            sketches.append(sketch)
        stride = sketches[0].stride if sketches else 1  # none: every feature counted, no extra column
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
        if numeric == width:
            self.block_range = (lows[:width], highs[:width])
        else:
            all_lows, all_highs = np.empty(width, np.float64), np.empty(width, np.float64)
            for row, (i, _) in enumerate(sketched):
                all_lows[i], all_highs[i] = lows[row], highs[row]
            for i, feature in enumerate(self.features.values()):
                if isinstance(feature, CategoricalSketch):
                    all_lows[i], all_highs[i] = _count_values(feature, matrix[:, i])
            self.block_range = (all_lows, all_highs)
        self.rows += int(n)
        return self

    def update_columns(self, columns: Sequence[Any]) -> Profile:
        """Add rows given as one array or list per feature, in schema order.

        A counted numeric feature's column is a float array (or a list of
        numbers): its values are counted under :func:`value_key`.
        """
        for sketch, column in zip(self.features.values(), columns):
            if isinstance(sketch, CategoricalSketch) and isinstance(column, np.ndarray) and column.dtype.kind == "f":
                _count_values(sketch, column)
            else:
                sketch.update(column)
        self.rows += len(columns[0]) if len(columns) else 0
        return self

    def update_outputs(self, labels: Sequence[Any] | None, scores: np.ndarray,
                       probabilities: np.ndarray | None = None) -> Profile:
        """Add the model's answers: labels (classifiers), top scores or values, and class probabilities."""
        if self.predictions is not None and labels is not None:
            self.predictions.update_counts({str(k): n for k, n in Counter(labels).items()})
        self.scores.update(scores)
        if probabilities is not None:
            for sketch, column in self._probability_columns(np.asarray(probabilities)):
                sketch.update(column)
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
        for label, scores in self.class_scores.items():
            if label in other.class_scores:
                scores.merge(other.class_scores[label])
        self.scores.merge(other.scores)
        self.latency.merge(other.latency)
        if self.multivariate is not None and other.multivariate is not None:
            self.multivariate.merge(other.multivariate)
        self.rows += other.rows
        return self

    # ----------------------------------------------------------------- bytes
    def to_bytes(self) -> bytes:
        """Portable bytes: a tag, a version, a JSON table of contents, then each sketch's bytes."""
        sections: list[tuple[str, str, NumericSketch | CategoricalSketch]] = [
            ("feature", name, sketch) for name, sketch in self.features.items()]
        if self.predictions is not None:
            sections.append(("predictions", "", self.predictions))
        sections += [("scores", "", self.scores), ("latency", "", self.latency)]
        sections += [("class_score", label, sketch) for label, sketch in self.class_scores.items()]
        if self.multivariate is not None:  # readers before it ignore an unknown section
            sections.append(("multivariate", "", self.multivariate))
        blobs = [sketch.to_bytes() for _, _, sketch in sections]
        # The header's JSON is the same from window to window but for the rows and the
        # lengths: its text is kept per section list, and only the numbers are written.
        key = tuple((section, name) for section, name, _ in sections)
        parts = _ENTRY_TEXT.get(key)
        if parts is None:
            if len(_ENTRY_TEXT) > 64:
                _ENTRY_TEXT.clear()
            parts = _ENTRY_TEXT[key] = [json.dumps([section, name])[:-1] + ", " for section, name in key]
        header = (f'{{"rows": {int(self.rows)}, "entries": ['
                  + ", ".join(f"{part}{len(blob)}]" for part, blob in zip(parts, blobs)) + "]}").encode("utf-8")
        return b"".join((_HEAD.pack(_MAGIC, _VERSION, len(header)), header, *blobs))

    @classmethod
    def from_bytes(cls, data: bytes, *, features: Collection[str] | None = None) -> Profile:
        """Read bytes written by :meth:`to_bytes`.

        With ``features``, only those features' sketches are read; every other feature is an
        empty sketch of its kind (its bytes skipped, only its tag looked at), so the profile
        keeps its schema: judged with :func:`~edge_runtime.monitoring.drift.assess_window`,
        the features read get the verdicts a whole read gives them (the family-wise alpha
        is split over the same tests). The sections besides the features are always read.

        Examples
        --------
        >>> import numpy as np
        >>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
        >>> inputs = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
        >>> outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
        >>> profile = Profile.for_schema(inputs, outputs)
        >>> _ = profile.update_matrix(np.ones((10, 2), dtype=np.float32), scores=np.ones(10))
        >>> only = Profile.from_bytes(profile.to_bytes(), features={"b"})
        >>> only.features["a"].count, only.features["b"].count, only.scores.count
        (0, 10, 10)
        """
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
        features_read: dict[str, NumericSketch | CategoricalSketch] = {}
        class_scores: dict[str, NumericSketch] = {}
        found: dict[str, Any] = {}
        for section, name, length in header["entries"]:
            if offset + length > len(data):
                raise BundleFormatError("profile bytes are truncated")
            offset += length
            if section == "feature" and features is not None and name not in features:
                features_read[name] = empty_sketch(data[offset - length:offset - length + 4])  # the tag only
                continue
            sketch = sketch_from_bytes(data[offset - length:offset])
            if section == "feature":
                features_read[name] = sketch
            elif section == "class_score" and isinstance(sketch, NumericSketch):
                class_scores[name] = sketch
            else:
                found[section] = sketch
        if "scores" not in found or "latency" not in found:
            raise BundleFormatError("profile lacks its scores or latency sketch")
        errors = found.get("multivariate")
        return cls(features_read, found.get("predictions"), found["scores"], found["latency"], int(header["rows"]),
                   class_scores, multivariate=errors if isinstance(errors, NumericSketch) else None)

    def __repr__(self) -> str:
        return f"Profile(rows={self.rows}, features={len(self.features)})"


def value_key(value: float) -> str:
    """The category a counted numeric value is counted under: the text of the number, as a class label's
    (:func:`~edge_runtime.serving.schema.canonical_label`: an integer-valued float is the int).

    >>> value_key(3.0), value_key(0.5), value_key(True)
    ('3', '0.5', '1')
    """
    return str(canonical_label(float(value)))


def is_counted(values: np.ndarray) -> bool:
    """Whether a numeric reference column is counted: at most :data:`COUNTED_VALUES` distinct
    values, all integers (NaN aside).

    >>> import numpy as np
    >>> is_counted(np.array([0, 1, 1, np.nan], dtype=np.float32)), is_counted(np.array([0.5, 1.0]))
    (True, False)
    """
    present = values[~np.isnan(values)]
    if present.size == 0:
        return False
    distinct = np.unique(present)
    return bool(distinct.size <= COUNTED_VALUES and np.all(np.isfinite(distinct))
                and np.all(distinct == np.round(distinct)))


_KEYS: dict[float, str] = {}  # value_key of the few values counted features take


def _count_values(sketch: CategoricalSketch, column: np.ndarray) -> tuple[float, float]:
    """Count one counted feature's float column into its sketch; return its (min, max) (NaN aside)."""
    values = np.asarray(column, dtype=np.float32)
    missing = np.isnan(values)
    present = values[~missing] if missing.any() else values
    sketch.missing += int(values.size - present.size)
    if present.size == 0:
        return math.inf, -math.inf
    distinct, counts = np.unique(present, return_counts=True)
    keys = []
    for value in distinct.tolist():
        key = _KEYS.get(value)
        if key is None:
            if len(_KEYS) > 4096:
                _KEYS.clear()
            key = _KEYS[value] = value_key(value)
        keys.append(key)
    sketch.update_counts(dict(zip(keys, counts.tolist())))
    return float(distinct[0]), float(distinct[-1])


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
