"""``inspect``: a bundle's manifest, and every verification loading does."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.cli.options import json_option, library_errors
from edge_runtime.serving.bundle import DIGEST_FILE, BundleCheck, inspect_bundle

__all__ = ["inspect"]

_MARKS = {"ok": "ok", "failed": "FAILED", "not recorded": "--"}


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@json_option("Print the manifest and verification as JSON.")
@library_errors
def inspect(bundle: Path, as_json: bool) -> None:
    """Show a bundle's manifest and verify it as loading does: digest, checksums, schema against the graph.

    Exits 1 on anything that loading refuses. A format 1 bundle, which has no digest, is
    reported as unprotected.
    """
    check = inspect_bundle(bundle)
    if as_json:
        click.echo(json.dumps(check.to_dict(), indent=2))
    else:
        _print_text(check)
    error = check.error()
    if error is not None:
        raise click.ClickException(str(error))


def _print_text(check: BundleCheck) -> None:
    m = check.manifest
    click.echo(f"{m.name} {m.version}  (format {m.format_version}, created {m.created_at})")
    click.echo(f"task: {m.output_schema.task.value}"
               + (f", classes: {list(m.output_schema.classes)}" if m.output_schema.classes else ""))
    click.echo(f"inputs ({m.input_schema.layout.value} layout): {len(m.input_schema.features)} features")
    for f in m.input_schema.features:
        detail = (f"{len(f.categories)} categories" if f.kind.value == "categorical"
                  else "True/False" if f.kind.value == "boolean" else f"range [{f.minimum}, {f.maximum}]")
        click.echo(f"  {f.name}: {f.kind.value}, {detail}" + (", missing allowed" if f.allows_missing else ""))
    click.echo("producer: " + ", ".join(f"{k} {v}" for k, v in m.producer.items() if k != "opset"))
    if m.parity:
        p = m.parity
        click.echo(f"parity: passed={p.get('passed')}, agreement={p.get('agreement')}, "
                   f"max_abs_diff={p.get('max_abs_diff')}, rows_beyond_tolerance="
                   f"{p.get('rows_beyond_tolerance')} of {p.get('rows')} ({p.get('source')})")
    if check.digest is None:
        click.echo(f"manifest: unprotected (format {m.format_version} has no digest: "
                   "an edit of manifest.json goes undetected)")
    elif check.digest.ok:
        click.echo(f"manifest: [ok] {check.digest.computed} ({DIGEST_FILE})")
    else:
        click.echo(f"manifest: [FAILED] {check.digest.reason}")
    click.echo("files:")
    for c in check.files:
        click.echo(f"  [{'ok' if c.ok else 'FAILED'}] {c.name}" + ("" if c.ok else f": {c.reason}"))
    if check.graph:
        click.echo("schema against the graph ([--]: the graph does not record it):")
    for g in check.graph:
        click.echo(f"  [{_MARKS[g.status.value]}] {g.model} {g.field}: {g.message}")
