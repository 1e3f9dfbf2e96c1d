"""A simulated fleet for tests and benchmarks: real profiles and verdicts from seeded data.

Every window is made by the device's own machinery: a :class:`Profile` shaped
like the reference, thinned as a device thins a window of its size
(:func:`~edge_runtime.monitoring.windows.window_stride`), judged on the device by
:func:`~edge_runtime.monitoring.drift.assess_window` and its verdicts stored as
:func:`~edge_runtime.monitoring.windows.decode_verdicts` reads them back.

Examples
--------
>>> model, windows = simulate_fleet(devices=2, windows_per_device=2, features=3, rows=500, seed=0)
>>> len(windows), sorted({w.device_id for w in windows}), model.name
(4, ['dev-000', 'dev-001'], 'sim')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from collector.stores.base import ModelRecord, StoredWindow
from edge_runtime.config import DriftPolicy, MonitoringConfig
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.drift import assess_window
from edge_runtime.monitoring.sketches import REFERENCE_K
from edge_runtime.monitoring.windows import decode_verdicts, encode_drift, window_stride
from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task

__all__ = ["Shift", "simulate_fleet", "simulated_schema"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift:
    """A mean shift of one feature on one device, from one of its windows on.

    A shift of ``delta`` standard deviations moves the feature's KS distance from
    the reference by ``2 Phi(delta / 2) - 1`` (0.25: KS 0.0995).
    """

    device: int
    feature: int
    delta: float
    from_window: int = 0


def simulated_schema(features: int) -> tuple[InputSchema, OutputSchema]:
    """Numeric features ``f00``, ``f01``, ... and a regressor's output."""
    inputs = InputSchema(features=tuple(FeatureSpec(name=f"f{i:02d}") for i in range(features)))
    return inputs, OutputSchema(task=Task.REGRESSION, score_output="y")


def simulate_fleet(*, devices: int, windows_per_device: int, features: int, rows: int | tuple[int, ...],
                   seed: int, shifts: tuple[Shift, ...] = (), start: float = 1_800_000_000.0,
                   window_seconds: float = 600.0, reference_rows: int = 50_000,
                   policy: DriftPolicy | None = None, judge: bool = True,
                   name: str = "sim", version: str = "1") -> tuple[ModelRecord, list[StoredWindow]]:
    """A registered model (with its reference profile) and every device's windows, oldest first.

    ``rows`` is one window size, or one per device (cycled): windows of different
    sizes thin by different strides, as on real devices. Window ``j`` of a device
    closes at ``start + (j + 1) * window_seconds`` on the collector's clock (plus a
    few seconds per device). With ``judge`` False the windows carry no verdicts
    (faster, for benchmarks of the merge alone).
    """
    rng = np.random.default_rng(seed)
    policy = policy if policy is not None else DriftPolicy()
    inputs, outputs = simulated_schema(features)
    weights = rng.normal(size=features).astype(np.float32)
    reference_x = rng.normal(size=(reference_rows, features)).astype(np.float32)
    reference = Profile.for_schema(inputs, outputs, k=REFERENCE_K)
    reference.update_matrix(reference_x.copy(), scores=reference_x @ weights)
    reference_bytes = reference.to_bytes()
    sha = hashlib.sha256(reference_bytes).hexdigest()
    model = ModelRecord(sha256=sha, name=name, version=version, reference_profile=reference_bytes,
                        manifest={"name": name, "version": version})
    sizes = (rows,) if isinstance(rows, int) else rows
    by_device: Mapping[int, list[Shift]] = {d: [s for s in shifts if s.device == d] for d in range(devices)}
    windows = []
    for d in range(devices):
        size = sizes[d % len(sizes)]
        stride = window_stride(MonitoringConfig(window_rows=size))
        for j in range(windows_per_device):
            x = rng.normal(size=(size, features)).astype(np.float32)
            for shift in by_device[d]:
                if j >= shift.from_window:
                    x[:, shift.feature] += np.float32(shift.delta)
            profile = Profile.for_schema(inputs, outputs, stride=stride, like=reference)
            profile.update_matrix(x, scores=x @ weights, latency=np.full(size, 250.0, dtype=np.float32))
            closed = start + (j + 1) * window_seconds + d % 60
            verdicts: list[dict[str, object]] = []
            drift_count = 0
            if judge:
                stored, _ = encode_drift(assess_window(reference, profile, policy), closed)
                assert stored is not None
                verdicts = decode_verdicts(stored.layout, stored.codes, stored.numbers)
                drift_count = sum(1 for row in verdicts if row["status"] == "drift")
            windows.append(StoredWindow(
                device_id=f"dev-{d:03d}", database_id=f"db-{d:03d}", model_sha256=sha, seq_first=j,
                model_name=name, model_version=version, seq_last=j, opened_at=closed - window_seconds,
                closed_at=closed, corrected_closed_at=closed, received_at=closed + 1.0, rows=size, rejected=0,
                partial=False, quality={}, latency=None, budget=None, verdicts=verdicts,
                profile=profile.to_bytes(), losses={}, outbox_depth=0, boot_id=f"boot-{d:03d}",
                drift_count=drift_count))
    windows.sort(key=lambda w: (w.corrected_closed_at, w.device_id))
    return model, windows
