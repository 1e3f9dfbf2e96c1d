"""scripts/check_wheels.py without the network: the requirement sets, the pip call, the verdicts."""

from __future__ import annotations

import doctest
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from collections.abc import Callable
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent


def _load_script() -> ModuleType:
    # scripts/ is a folder of scripts, not a package: load the file by its path.
    spec = importlib.util.spec_from_file_location("check_wheels", ROOT / "scripts" / "check_wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


check_wheels = _load_script()

DEMO = {
    "project": {
        "name": "Edge_Runtime",
        "dependencies": ["numpy>=1.26", "click>=8.1"],
        "optional-dependencies": {
            "export": ["scikit-learn>=1.4", "numpy>=1.26"],
            "server": ["starlette>=0.37"],
            "all": ["edge-runtime[export,server]"],
            "test": ["pytest>=8"],
        },
    }
}


def test_the_docstring_examples_run() -> None:
    # scripts/ is outside pytest's doctest paths, so its examples run here.
    failed, attempted = doctest.testmod(check_wheels, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert (failed, attempted > 0) == (0, True)


def test_base_then_each_extra_on_top_of_base_without_test() -> None:
    sets = check_wheels.requirement_sets(DEMO)
    assert list(sets) == ["base", "export", "server", "all"]
    assert sets["base"] == ["numpy>=1.26", "click>=8.1"]
    # The base dependencies come first and a repeated requirement appears once.
    assert sets["export"] == ["numpy>=1.26", "click>=8.1", "scikit-learn>=1.4"]
    assert sets["server"] == ["numpy>=1.26", "click>=8.1", "starlette>=0.37"]


def test_an_extra_naming_the_project_itself_is_expanded() -> None:
    sets = check_wheels.requirement_sets(DEMO)
    assert sets["all"] == ["numpy>=1.26", "click>=8.1", "scikit-learn>=1.4", "starlette>=0.37"]


def test_a_self_reference_to_an_undefined_extra_is_an_error() -> None:
    broken = {"project": {"name": "edge-runtime", "dependencies": [],
                          "optional-dependencies": {"all": ["edge-runtime[nope]"]}}}
    with pytest.raises(ValueError, match="'nope'"):
        check_wheels.requirement_sets(broken)


def test_this_repositorys_sets_are_base_and_every_extra_but_test() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    sets = check_wheels.load_requirement_sets(ROOT / "pyproject.toml")
    assert list(sets) == ["base"] + [e for e in project["optional-dependencies"] if e != "test"]
    assert sets["base"] == project["dependencies"]
    assert not any(r.startswith(("pytest", "hypothesis", "mypy")) for reqs in sets.values() for r in reqs)


def test_platform_tags_cover_every_glibc_a_bookworm_pi_accepts() -> None:
    tags = check_wheels.platform_tags()
    assert tags[0] == "manylinux_2_36_aarch64"
    assert {"manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(tags)
    assert all(tag.endswith("_aarch64") for tag in tags)


def test_pip_ignores_local_configuration_but_keeps_index_and_cert(tmp_path: Path) -> None:
    command = check_wheels.pip_command(["numpy>=1.26"], tmp_path / "r.json", tmp_path / "t",
                                       environ={"PIP_INDEX_URL": "https://mirror.invalid/simple",
                                                "PIP_CERT": "/ca.pem",
                                                "PIP_EXTRA_INDEX_URL": "file:///local/simple",
                                                "PIP_CONSTRAINT": "/local/constraints.txt"})
    assert command[:4] == [sys.executable, "-m", "pip", "--isolated"]
    for option in ("--dry-run", "--only-binary=:all:", "--ignore-installed"):
        assert option in command
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--implementation") + 1] == "cp"
    assert command[command.index("--index-url") + 1] == "https://mirror.invalid/simple"
    assert command[command.index("--cert") + 1] == "/ca.pem"
    assert "file:///local/simple" not in command and "/local/constraints.txt" not in command
    assert command[-1] == "numpy>=1.26"


def _fake_pip(returncode: int, wheels: list[str],
              stderr: str = "") -> Callable[[list[str]], subprocess.CompletedProcess[str]]:
    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        if returncode == 0:
            report = Path(command[command.index("--report") + 1])
            report.write_text(json.dumps({"install": [
                {"download_info": {"url": f"https://files.invalid/x/{w}"}} for w in wheels]}))
        return subprocess.CompletedProcess(command, returncode, stdout="Collecting x\n", stderr=stderr)
    return run


def test_a_resolved_set_counts_its_packages() -> None:
    result = check_wheels.check_set("base", ["numpy"], run=_fake_pip(0, [
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_aarch64.whl", "click-8.5.1-py3-none-any.whl"]))
    assert result.ok
    assert result.line() == "base: ok (2 packages)"


def test_a_failed_set_is_named_with_pips_reason() -> None:
    stderr = ("ERROR: Could not find a version that satisfies the requirement tflite-runtime (from versions: none)\n"
              "ERROR: No matching distribution found for tflite-runtime\n")
    result = check_wheels.check_set("export", ["tflite-runtime"], run=_fake_pip(1, [], stderr))
    assert not result.ok
    assert result.line() == ("export: FAILED: Could not find a version that satisfies the requirement "
                             "tflite-runtime (from versions: none); No matching distribution found for tflite-runtime")


def test_main_exits_1_when_any_set_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\ndependencies = ["numpy"]\n'
                         '[project.optional-dependencies]\nbad = ["nowheel"]\ntest = ["pytest"]\n')

    def fake_check_set(name: str, requirements: list[str]) -> object:
        if "nowheel" in requirements:
            return check_wheels.SetResult(name=name, reason="No matching distribution found for nowheel")
        return check_wheels.SetResult(name=name, wheels=("numpy-2.4.6-cp311-cp311-manylinux_2_28_aarch64.whl",))

    monkeypatch.setattr(check_wheels, "check_set", fake_check_set)
    assert check_wheels.main(["--pyproject", str(pyproject)]) == 1
    assert capsys.readouterr().out == "base: ok (1 package)\nbad: FAILED: No matching distribution found for nowheel\n"
