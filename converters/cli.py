"""The workstation's commands: ``export``, ``bundle`` and ``demo``.

Registered with the ``edge-runtime`` command through the ``edge_runtime.commands``
entry point. Importing this module checks that the export extra is installed, so
that on a device install the command answers with the line to install it.
"""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path
from typing import Any

import click

from converters.extra import require_export_extra

require_export_extra()  # before anything that needs it: the ImportError is what the CLI reports

from converters.demo import DemoReport, run_demo  # noqa: E402
from converters.export import export  # noqa: E402
from converters.features import CSV_TYPES, csv_dtypes, csv_header, read_csv_frame  # noqa: E402
from converters.onnx_file import bundle_onnx  # noqa: E402
from converters.parity import ParityPolicy  # noqa: E402
from converters.sklearn import encoded_columns, load_estimator  # noqa: E402
from edge_runtime.cli.options import library_errors  # noqa: E402

__all__ = ["bundle_command", "demo_command", "export_command"]


def _parse_dtypes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``--dtype COL=TYPE`` options as a dict; the column name may itself hold ``=``."""
    dtypes: dict[str, str] = {}
    for value in values:
        name, sep, kind = value.rpartition("=")
        if not sep or not name:
            raise click.BadParameter(f"'{value}' is not COL=TYPE", ctx, param)
        if kind not in CSV_TYPES:
            raise click.BadParameter(f"'{value}': TYPE must be one of {', '.join(CSV_TYPES)}", ctx, param)
        if dtypes.get(name, kind) != kind:
            raise click.BadParameter(f"column '{name}' is given both {dtypes[name]} and {kind}", ctx, param)
        dtypes[name] = kind
    return dtypes


def _near(name: str, columns: list[str]) -> str:
    by_case = [c for c in columns if c.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, columns, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@click.command("export")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--train-data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of the training data, with a header row.")
@click.option("--target", help="Column of the CSV holding the target; dropped before profiling.")
@click.option("--validation-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of held-out rows for the parity check (default: a sample of the training data).")
@click.option("--categorical", multiple=True, metavar="COL",
              help="Read column COL as strings (categories) whatever its values look like; for columns the "
                   "model's encoders do not name. Repeatable.")
@click.option("--dtype", "dtypes", multiple=True, metavar="COL=TYPE", callback=_parse_dtypes,
              help=f"Read column COL as TYPE, one of {', '.join(CSV_TYPES)} (int refuses missing values). "
                   "Repeatable.")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Fail below this share of rows agreeing with the original model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@click.option("--quantize", is_flag=True, help="Also write an int8 variant (MLPs), the fallback for budgets.")
@library_errors
def export_command(model_file: Path, train_data: Path, target: str | None, validation_data: Path | None,
                   categorical: tuple[str, ...], dtypes: dict[str, str], name: str, model_version: str,
                   out_dir: Path, min_agreement: float, overwrite: bool, quantize: bool) -> None:
    """Export a pickled or joblib-saved scikit-learn, XGBoost, LightGBM or CatBoost model to a bundle.

    MODEL_FILE is unpickled: only export files you trust. It holds a fitted
    estimator or Pipeline, or a native xgboost.Booster or lightgbm.Booster.

    A column that the model's OneHotEncoder or OrdinalEncoder consumes is read as
    that encoder was fitted: as strings (a zip code "01000" keeps its leading zero)
    or as numbers. In a string column only an empty cell is a missing value.
    Details: docs/export.md.
    """
    model = load_estimator(model_file)
    header = csv_header(train_data)
    if target is not None and target not in header:
        raise click.ClickException(f"--target column '{target}' is not in {train_data}{_near(target, header)}")
    column_types = csv_dtypes(encoded_columns(model), header, categorical=categorical, dtypes=dtypes,
                              source=train_data)
    frame = read_csv_frame(train_data, column_types)
    y = frame.pop(target) if target is not None else None
    X_val = None
    if validation_data is not None:
        X_val = read_csv_frame(validation_data, column_types)
        X_val = X_val.drop(columns=[target]) if target in X_val.columns else X_val
    result = export(model, frame, y, name=name, version=model_version, out_dir=out_dir, X_val=X_val,
                    parity=ParityPolicy(min_agreement=min_agreement), overwrite=overwrite, quantize=quantize)
    click.echo(f"wrote {result.path}")
    click.echo(_parity_line(result.parity or {}))
    variants = result.manifest.variants
    if quantize:
        int8 = variants.get("int8")
        click.echo(f"int8 variant: label agreement {int8['parity']['agreement']:.4f}, {int8['bytes']:,} bytes"
                   if int8 else variants.get("note", "no int8 variant"))


def _parity_line(parity: dict[str, Any]) -> str:
    """The parity report in one line, every count as the manifest records it."""
    rows, rejected = parity.get("rows", 0), parity.get("rejected_rows", 0)
    diff = parity.get("max_abs_diff")
    line = (f"parity: agreement {parity.get('agreement', 0):.4f}, max abs diff "
            f"{'-' if diff is None else format(diff, '.2e')}, {parity.get('rows_beyond_tolerance')} of "
            f"{rows - rejected} compared rows beyond tolerance")
    if rejected:
        line += f"; {rejected} of {rows} rows rejected by the bundle's input checks, not compared"
    return line


@click.command("bundle")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--schema", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file: task, classes, features (see docs/export.md).")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--reference-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of training data to profile (needs pandas).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@library_errors
def bundle_command(onnx_file: Path, schema: Path, name: str, model_version: str, out_dir: Path,
                   reference_data: Path | None, overwrite: bool) -> None:
    """Wrap an ONNX file exported elsewhere, plus a JSON schema, into a bundle."""
    reference = None
    if reference_data is not None:
        import pandas as pd

        reference = pd.read_csv(reference_data)
    result = bundle_onnx(onnx_file, schema, name=name, version=model_version, out_dir=out_dir,
                         reference_data=reference, overwrite=overwrite)
    click.echo(f"wrote {result.path}")


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo bundle here (default: a temporary directory).")
@library_errors
def demo_command(out_dir: Path | None) -> None:
    """Train a model on data shipped with scikit-learn, export it, and serve it."""
    with tempfile.TemporaryDirectory() as tmp:
        report = run_demo(out_dir or tmp, fleet=True)
        _print_demo(report, keep=out_dir is not None)
        _print_fleet(report)


def _print_demo(report: DemoReport, keep: bool) -> None:
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
    click.echo(f"  monitoring ({len(report.windows)} windows; shift injected into: "
               f"{', '.join(report.shifted_features)}):")
    for w in report.windows:
        drifted = ", ".join(f"{name} ({e['metric']} {e['value']:.2f} > {e['threshold']:.2f})"
                            for name, e in w["drift"].items()) or "none"
        click.echo(f"    window {w['index']} ({w['rows']} {w['stream']}): drifted: {drifted}; "
                   f"warn: {', '.join(w['warn']) or 'none'}; ok: {w['ok']} features; prediction: {w['prediction']}")
    if keep:
        click.echo(f"  decision log and windows: {report.database}; see `edge-runtime drift --db {report.database}`")
    else:  # the temporary directory is gone once the demo returns: say how to keep it
        click.echo("  decision log and windows: removed with the temporary directory; `edge-runtime demo --out DIR` "
                   "keeps them for `edge-runtime drift --db DIR/monitor.db`")


def _print_fleet(report: DemoReport) -> None:
    fleet = report.fleet
    if fleet is None:
        click.echo("  fleet: skipped (the collector extra is not installed): pip install 'edge-runtime[collector]' "
                   "and run the demo again to see two devices report to a collector")
        return
    click.echo(f"  fleet: devices {', '.join(fleet.devices)} (kiosk-1 carries the shift) report to a collector "
               f"on loopback ({fleet.store})")
    for device, line in fleet.offline_sync.items():
        click.echo(f"    {device} sync with the collector not yet started: {line}")
    for device, line in fleet.synced.items():
        click.echo(f"    {device} sync once it serves: {line}")
    click.echo("  edge-runtime fleet status:")
    for line in fleet.status.splitlines():
        click.echo(f"    {line}")
    click.echo("  edge-runtime fleet drift --bucket 1d:")
    for line in fleet.drift.splitlines():
        click.echo(f"    {line}")
