"""The device install: no scikit-learn, no pandas, and the workstation's commands name their extra.

The fast test blocks the export extra's modules in a child process; the slow one
builds a real device virtualenv (``pip install .``, no extras) and drives the
``edge-runtime`` command installed there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BUNDLE = ROOT / "tests" / "data" / "bundles" / "format-1-tensor"
EXTRA_LINE = ("Error: 'edge-runtime {command}' needs the export extra, which is not installed "
              "({missing}): pip install 'edge-runtime[export]'\n")

_BLOCKED = """
import sys
for name in ("sklearn", "skl2onnx", "onnx", "pandas", "joblib"):
    sys.modules[name] = None  # as if not installed
from edge_runtime.cli import main
main(sys.argv[1:], prog_name="edge-runtime")
"""


@pytest.mark.parametrize("command", ["export", "bundle", "demo"])
def test_workstation_commands_name_the_extra_when_it_is_missing(tmp_path: Path, command: str) -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCKED, command, "anything", "--name", "x"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    missing = "missing scikit-learn, skl2onnx, onnx, pandas, joblib"
    assert result.stderr == EXTRA_LINE.format(command=command, missing=missing)
    listing = subprocess.run([sys.executable, "-c", _BLOCKED, "--help"], capture_output=True, text=True)
    assert f"  {command} " in listing.stdout and listing.returncode == 0


@pytest.mark.slow
def test_a_device_virtualenv_serves_a_bundle_without_the_training_libraries(tmp_path: Path) -> None:
    env_dir = tmp_path / "device"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "edge-runtime"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True,
                             text=True, env=environ, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]

    loaded = subprocess.run([str(python), "-c", "import sys, importlib.util, edge_runtime; "
                             "print([m for m in ('sklearn', 'skl2onnx', 'pandas', 'onnx') "
                             "if importlib.util.find_spec(m)])"],
                            capture_output=True, text=True, env=environ, cwd=tmp_path, check=True)
    assert loaded.stdout.strip() == "[]"

    export = subprocess.run([str(cli), "export", "model.pkl"], capture_output=True, text=True, env=environ,
                            cwd=tmp_path)
    assert export.returncode == 1
    assert export.stderr == EXTRA_LINE.format(command="export",
                                              missing="missing scikit-learn, skl2onnx, onnx, pandas, joblib")

    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c\n0.5,0.5,0.1\n-2,-2,0\n")
    predict = subprocess.run([str(cli), "predict", str(BUNDLE), "--input", str(rows), "--db",
                              str(tmp_path / "m.db")], capture_output=True, text=True, env=environ, cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    assert [line.split(",")[:2] for line in predict.stdout.splitlines()] == [["row", "prediction"], ["1", "1"],
                                                                             ["2", "0"]]
    status = subprocess.run([str(cli), "status", "--db", str(tmp_path / "m.db")], capture_output=True, text=True,
                            env=environ, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.startswith("decision log: 2 rows")
