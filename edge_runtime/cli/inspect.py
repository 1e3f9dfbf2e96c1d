"""``inspect``: a bundle's manifest, and the verification of every file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.cli.options import json_option, library_errors
from edge_runtime.serving.bundle import inspect_bundle

__all__ = ["inspect"]


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@json_option("Print the manifest and verification as JSON.")
@library_errors
def inspect(bundle: Path, as_json: bool) -> None:
    """Show a bundle's manifest and verify every file's checksum."""
    check = inspect_bundle(bundle)
    if as_json:
        click.echo(json.dumps(check.to_dict(), indent=2))
    else:
        m = check.manifest
        click.echo(f"{m.name} {m.version}  (format {m.format_version}, created {m.created_at})")
        click.echo(f"task: {m.output_schema.task.value}"
                   + (f", classes: {list(m.output_schema.classes)}" if m.output_schema.classes else ""))
        click.echo(f"inputs ({m.input_schema.layout.value} layout): {len(m.input_schema.features)} features")
        for f in m.input_schema.features:
            detail = (f"{len(f.categories)} categories" if f.kind.value == "categorical"
                      else f"range [{f.minimum}, {f.maximum}]")
            click.echo(f"  {f.name}: {f.kind.value}, {detail}" + (", missing allowed" if f.allows_missing else ""))
        click.echo("producer: " + ", ".join(f"{k} {v}" for k, v in m.producer.items() if k != "opset"))
        if m.parity:
            p = m.parity
            click.echo(f"parity: passed={p.get('passed')}, agreement={p.get('agreement')}, "
                       f"max_abs_diff={p.get('max_abs_diff')}, rows_beyond_tolerance="
                       f"{p.get('rows_beyond_tolerance')} of {p.get('rows')} ({p.get('source')})")
        for c in check.files:
            click.echo(f"  [{'ok' if c.ok else 'FAILED'}] {c.name}" + ("" if c.ok else f": {c.reason}"))
    if not check.ok:
        bad = next(c for c in check.files if not c.ok)
        raise click.ClickException(f"bundle file '{bad.name}' {bad.reason}")
