"""The flow runs one way: the engine never tracks or prunes, and each library has one home."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trainer"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules_importing(name: str) -> list[str]:
    """Modules of trainer/ (sub-packages included) that import ``name``, relative paths."""
    return sorted(
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if name in imported_roots(p)
    )


def test_trainer_never_imports_optuna() -> None:
    assert modules_importing("optuna") == []


def test_mlflow_lives_in_the_tracking_package_only() -> None:
    importing = modules_importing("mlflow")
    assert importing and all(name.startswith("tracking/") for name in importing), importing


def test_albumentations_only_in_transforms() -> None:
    assert modules_importing("albumentations") == ["data/transforms.py"]


def test_engine_imports_no_tracking_pruning_or_data_libraries() -> None:
    assert (
        imported_roots(PACKAGE / "engine.py") & {"mlflow", "optuna", "albumentations", "cv2"}
        == set()
    )


def test_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import optuna.trial\nfrom mlflow import log_metric\n")
    assert {"optuna", "mlflow"} <= imported_roots(sample)


UNPICKLERS = {"pickle", "cloudpickle", "dill", "joblib"}


def unpickling_calls(path: Path) -> list[str]:
    """Imports of pickle libraries and calls that unpickle (pyfunc.load_model, torch.load)."""
    found = sorted(imported_roots(path) & UNPICKLERS)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if (owner, node.attr) in {("pyfunc", "load_model"), ("torch", "load")}:
                found.append(f"{owner}.{node.attr}")
    return found


def test_no_code_of_ours_unpickles_a_model() -> None:
    """trainer predict, studies promote and the report build models from safetensors only."""
    packages = (PACKAGE, PACKAGE.parent / "studies")
    offenders = {
        p.relative_to(PACKAGE.parent).as_posix(): calls
        for package in packages
        for p in package.rglob("*.py")
        if (calls := unpickling_calls(p))
    }
    assert offenders == {}


def test_unpickling_checker_sees_calls(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import mlflow.pyfunc\nimport torch\nmlflow.pyfunc.load_model(u)\ntorch.load(f)\n"
    )
    assert unpickling_calls(sample) == ["pyfunc.load_model", "torch.load"]
