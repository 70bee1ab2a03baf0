"""The flow runs one way: the engine never tracks or prunes, and each library has one home."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trainer"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 40


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


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module names of a package folder (``trainer.data.scan``), packages included."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its body (lazy imports too),
    with the packages whose ``__init__`` those imports run."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            wanted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            wanted = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        else:
            continue
        for target in wanted:
            parts = target.split(".")
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            found |= {p for p in prefixes if p in known and not f"{name}.".startswith(f"{p}.")}
    return found - {name}


def import_cycle(root: Path) -> list[str]:
    """One import cycle among the package's modules, or [] when there is none."""
    known = module_names(root)
    graph = {name: imported_modules(name, path, known) for name, path in known.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        return list(error.args[1])
    return []


def test_no_import_cycle_inside_trainer() -> None:
    assert import_cycle(PACKAGE) == []


def test_cycle_checker_sees_a_lazy_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("class B:\n    import pkg.a\n")
    assert set(import_cycle(package)) == {"pkg.a", "pkg.sub.b"}


def oversized(root: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(root.parent).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_modules_and_functions_stay_small() -> None:
    assert oversized(PACKAGE) + oversized(PACKAGE.parent / "studies") == []


def test_size_checker_sees_a_long_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (package / "m.py").write_text(f"def long():\n{body}\n\ndef short():\n    pass\n")
    assert oversized(package) == [f"pkg/m.py:1 long: {MAX_FUNCTION_LINES + 1} lines"]
