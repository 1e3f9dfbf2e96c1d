"""The ``edge-runtime`` command line: parse, call the public API, format.

Library errors become one ``Error: ...`` line and exit status 1 here, at this one
boundary; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from edge_runtime import __version__
from edge_runtime.bundle import check_files, read_manifest
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.runtime import Runtime
from edge_runtime.tabular import FORMATS, PredictionWriter, batched, read_rows

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
_MAX_ROW_ERRORS_SHOWN = 20


def _library_errors(func: F) -> F:
    """Turn library errors into click's one-line ``Error: ...`` unless --debug is on."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EdgeRuntimeError, OSError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="edge-runtime")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Run classic ML models on small CPU-only devices, and watch them there."""


# ---------------------------------------------------------------- export side
@main.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--train-data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of the training data, with a header row.")
@click.option("--target", help="Column of the CSV holding the target; dropped before profiling.")
@click.option("--validation-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of held-out rows for the parity check (default: a sample of the training data).")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Fail below this share of rows agreeing with the original model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@_library_errors
def export(model_file: Path, train_data: Path, target: str | None, validation_data: Path | None,
           name: str, model_version: str, out_dir: Path, min_agreement: float, overwrite: bool) -> None:
    """Export a pickled or joblib-saved scikit-learn model to a bundle.

    MODEL_FILE is unpickled: only export files you trust.
    """
    import joblib
    import pandas as pd

    from converters import ParityPolicy
    from converters import export as export_model

    model = joblib.load(model_file)
    frame = pd.read_csv(train_data)
    y = None
    if target is not None:
        if target not in frame.columns:
            raise click.ClickException(f"--target column '{target}' is not in {train_data}")
        y = frame.pop(target)
    X_val = None
    if validation_data is not None:
        X_val = pd.read_csv(validation_data)
        X_val = X_val.drop(columns=[target]) if target in X_val.columns else X_val
    result = export_model(model, frame, y, name=name, version=model_version, out_dir=out_dir, X_val=X_val,
                          parity=ParityPolicy(min_agreement=min_agreement), overwrite=overwrite)
    parity = result.parity or {}
    click.echo(f"wrote {result.path}")
    click.echo(f"parity: agreement {parity.get('agreement', 0):.4f}, max abs diff "
               f"{parity.get('max_abs_diff')}, {parity.get('rows_beyond_tolerance')} of "
               f"{parity.get('rows')} rows beyond tolerance")


@main.command("bundle")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--schema", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file: task, classes, features (see README).")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--reference-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of training data to profile (needs pandas).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@_library_errors
def bundle_command(onnx_file: Path, schema: Path, name: str, model_version: str, out_dir: Path,
                   reference_data: Path | None, overwrite: bool) -> None:
    """Wrap an ONNX file exported elsewhere, plus a JSON schema, into a bundle."""
    from converters import bundle_onnx

    reference = None
    if reference_data is not None:
        import pandas as pd

        reference = pd.read_csv(reference_data)
    result = bundle_onnx(onnx_file, schema, name=name, version=model_version, out_dir=out_dir,
                         reference_data=reference, overwrite=overwrite)
    click.echo(f"wrote {result.path}")


# ---------------------------------------------------------------- device side
@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and verification as JSON.")
@_library_errors
def inspect(bundle: Path, as_json: bool) -> None:
    """Show a bundle's manifest and verify every file's checksum."""
    manifest = read_manifest(bundle)
    checks = check_files(bundle, manifest)
    ok = all(c.ok for c in checks)
    if as_json:
        payload = {"manifest": manifest.to_dict(),
                   "verification": {"ok": ok, "files": [{"name": c.name, "ok": c.ok, "reason": c.reason}
                                                        for c in checks]}}
        click.echo(json.dumps(payload, indent=2))
    else:
        m = manifest
        click.echo(f"{m.name} {m.version}  (format {m.format_version}, created {m.created_at})")
        click.echo(f"task: {m.output_schema.task.value}"
                   + (f", classes: {list(m.output_schema.classes)}" if m.output_schema.classes else ""))
        click.echo(f"inputs ({m.input_schema.layout.value} layout): {len(m.input_schema.features)} features")
        for f in m.input_schema.features:
            detail = (f"{len(f.categories)} categories" if f.kind.value == "categorical"
                      else f"range [{f.minimum}, {f.maximum}]")
            click.echo(f"  {f.name}: {f.kind.value}, {detail}" + (", missing allowed" if f.allows_missing else ""))
        producer = m.producer
        click.echo("producer: " + ", ".join(f"{k} {v}" for k, v in producer.items() if k != "opset"))
        if m.parity:
            p = m.parity
            click.echo(f"parity: passed={p.get('passed')}, agreement={p.get('agreement')}, "
                       f"max_abs_diff={p.get('max_abs_diff')}, rows_beyond_tolerance="
                       f"{p.get('rows_beyond_tolerance')} of {p.get('rows')} ({p.get('source')})")
        for c in checks:
            click.echo(f"  [{'ok' if c.ok else 'FAILED'}] {c.name}" + ("" if c.ok else f": {c.reason}"))
    if not ok:
        bad = next(c for c in checks if not c.ok)
        raise click.ClickException(f"bundle file '{bad.name}' {bad.reason}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_file", required=True, type=click.File("r"),
              help="CSV with a header row, or JSON lines; '-' reads standard input.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: from the file name, else csv).")
@click.option("--output", type=click.File("w"), default="-", help="Where predictions go (default: standard output).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Device config (TOML).")
@click.option("--drop", multiple=True, help="Input column to ignore (an id or target); repeatable.")
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True)
@_library_errors
def predict(bundle: Path, input_file: Any, fmt: str | None, output: Any, config: Path | None,
            drop: tuple[str, ...], batch_size: int) -> None:
    """Predict every row of a CSV or JSON-lines file.

    Writes one line per good row with its row number, a `prediction` column and,
    for classifiers, one `proba_<label>` column per class. Bad rows are reported
    on standard error by row number (1 = first data row) and the exit status is 1.
    """
    if fmt is None:
        fmt = "jsonl" if str(getattr(input_file, "name", "")).endswith((".jsonl", ".ndjson")) else "csv"
    with Runtime(bundle, config=config) as runtime:
        columns = ["row", "prediction"] + [f"proba_{c}" for c in runtime.classes]
        writer = PredictionWriter(output, fmt, columns)
        total, errors = 0, []
        for chunk in batched(read_rows(input_file, fmt, drop=drop), batch_size):
            good = [(i, r) for i, r in enumerate(chunk) if not isinstance(r, Exception)]
            errors += [str(r) for r in chunk if isinstance(r, Exception)]  # they carry their row
            if good:
                result = runtime.predict_batch([r for _, r in good], on_error="skip")
                for err in result.errors:
                    number = total + good[err.row or 0][0] + 1
                    errors.append(f"row {number}: {err.args[0]}")
                for record in result.records():
                    record["row"] = total + good[record["row"]][0] + 1
                    writer.write(record)
            total += len(chunk)
    output.flush()
    if errors:
        for line in errors[:_MAX_ROW_ERRORS_SHOWN]:
            click.echo(f"Error: {line}", err=True)
        if len(errors) > _MAX_ROW_ERRORS_SHOWN:
            click.echo(f"Error: ... and {len(errors) - _MAX_ROW_ERRORS_SHOWN} more bad rows", err=True)
        raise click.ClickException(f"{len(errors)} of {total} rows rejected; the other rows were written")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo bundle here (default: a temporary directory).")
@_library_errors
def demo(out_dir: Path | None) -> None:
    """Train a model on data shipped with scikit-learn, export it, and serve it."""
    try:
        from converters.demo import run_demo
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"the demo trains a model and needs the export extra: pip install 'edge-runtime[export]' ({exc})"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        report = run_demo(out_dir or tmp)
        _print_demo(report, keep=out_dir is not None)


def _print_demo(report: Any, keep: bool) -> None:
    p = report.parity
    click.echo(f"edge-runtime demo: {report.model_type} on {report.dataset}")
    click.echo(f"  trained on {report.train_rows} rows; {report.test_rows} held-out rows served on the device runtime")
    click.echo(f"  bundle: {report.bundle}" + ("" if keep else " (temporary; --out DIR keeps it)"))
    click.echo(f"  parity vs scikit-learn ({p.get('source')}): label agreement {p.get('label_agreement'):.4f}, "
               f"max |proba diff| {p.get('max_abs_diff'):.2e}, rows beyond tolerance "
               f"{p.get('rows_beyond_tolerance')} of {p.get('rows')}: {'PASSED' if p.get('passed') else 'FAILED'}")
    lat = report.latency_us
    click.echo(f"  single-row latency (dict rows): p50 {lat['p50']:.1f} us, p90 {lat['p90']:.1f} us, "
               f"p99 {lat['p99']:.1f} us")
    click.echo(f"  accuracy on held-out rows: runtime {report.accuracy:.4f}, scikit-learn "
               f"{report.sklearn_accuracy:.4f}; same label on {report.label_agreement:.2%} of rows")
    click.echo("  first predictions:")
    for ex in report.examples:
        click.echo(f"    row {ex['row']}: true {ex['true']:<9} predicted {ex['predicted']:<9} "
                   f"(p={ex['probability']:.3f})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
