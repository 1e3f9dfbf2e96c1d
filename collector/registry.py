"""What the collector is told about: devices (their public keys) and models (their bundles).

``collector add-device`` and ``collector add-model`` call these; the functions check
what they are given before the store sees it.
"""

from __future__ import annotations

from pathlib import Path

from collector.stores.base import DeviceRecord, FleetStore, ModelRecord
from edge_runtime.errors import BundleFormatError
from edge_runtime.serving.bundle import Bundle, load_bundle
from edge_runtime.sync.keys import check_device_id, parse_public_key

__all__ = ["bundle_models", "register_bundle", "register_device"]


def register_device(store: FleetStore, device_id: str, public_key: str, *, now: float) -> DeviceRecord:
    """Add a device (or give a removed one back its place) with its ``ed25519:...`` public key.

    Raises
    ------
    edge_runtime.errors.ConfigError
        The id is not a valid device id, or the key is not an Ed25519 public key.
    """
    check_device_id(device_id)
    parse_public_key(public_key)
    return store.add_device(device_id, public_key.strip(), now=now)


def bundle_models(bundle: Bundle, *, now: float) -> list[ModelRecord]:
    """One record per model file of the bundle (the main model, then each variant such as int8).

    A device reports the sha256 of the file it runs, so each is registered, with the
    bundle's manifest and reference profile.
    """
    manifest = bundle.manifest
    profile = b""
    sketches = (manifest.reference or {}).get("sketches") or {}
    name = sketches.get("file") if isinstance(sketches, dict) else None
    if isinstance(name, str):
        profile = (bundle.path / name).read_bytes()  # load_bundle checked it against the manifest's sha256
    document = manifest.to_dict()
    records = []
    for file in manifest.model_files:
        sha256 = manifest.files[file].get("sha256")
        if not isinstance(sha256, str):
            raise BundleFormatError(f"bundle '{bundle.path}': the manifest lists no sha256 for '{file}'")
        records.append(ModelRecord(sha256=sha256, name=manifest.name, version=manifest.version,
                                   reference_profile=profile, manifest=document, added_at=now))
    return records


def register_bundle(store: FleetStore, path: str | Path, *, now: float) -> list[ModelRecord]:
    """Verify the bundle at ``path`` and register its models (re-registering replaces them).

    Raises
    ------
    edge_runtime.errors.BundleError
        The bundle cannot be loaded (missing, altered, unreadable manifest).
    """
    records = bundle_models(load_bundle(path), now=now)
    for record in records:
        store.add_model(record)
    return records
