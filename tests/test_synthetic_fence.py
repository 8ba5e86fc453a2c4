"""The synthetic generator is fenced: no production module imports it, and it reads reference data only
through `transforms.reference`.

`transforms/synthetic/` ships in the package because `ktt demo` and `ktt generate` write synthetic
worlds; everything else must run on a municipality's real data without it. The scan reads the source
(AST), so an import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = ("transforms", "assets", "pipelines")
SYNTHETIC = REPO / "transforms" / "synthetic"
# the CLI commands that generate data, by module and function name
ALLOWED = {("pipelines/cli.py", "cmd_generate"), ("pipelines/cli.py", "cmd_demo")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The absolute names an import statement brings in (relative imports resolved against `module`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def synthetic_imports(path: Path) -> list[tuple[str, int]]:
    """(enclosing function or '<module>', line) of every import of `transforms.synthetic` in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module, is_package = _module_name(path), path.name == "__init__.py"
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope
            names = _imported_modules(child, module, is_package)
            if any(n == "transforms.synthetic" or n.startswith("transforms.synthetic.") for n in names):
                found.append((scope, child.lineno))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def production_modules() -> list[Path]:
    return sorted(p for folder in PRODUCTION for p in (REPO / folder).rglob("*.py")
                  if SYNTHETIC not in p.parents)


def test_no_production_module_imports_the_synthetic_generator():
    offenders = [
        f"{path.relative_to(REPO)}:{line} ({scope})"
        for path in production_modules()
        for scope, line in synthetic_imports(path)
        if (path.relative_to(REPO).as_posix(), scope) not in ALLOWED
    ]
    assert offenders == []


def test_the_generating_commands_are_the_ones_allowed():
    """The allowance is used, and only by the commands named: it cannot hide a stale exception."""
    used = {(p.relative_to(REPO).as_posix(), scope) for p in production_modules() for scope, _ in synthetic_imports(p)}
    assert used == ALLOWED


@pytest.mark.parametrize(("source", "caught"), [
    ("from transforms.synthetic import generate", True),
    ("import transforms.synthetic.ids", True),
    ("from transforms import synthetic", True),
    ("from ..synthetic.ids import birth_number", True),
    ("def f():\n    from transforms.synthetic.world import World", True),
    ("from transforms.reference import codes", False),
    ("from ..reference.municipalities import ssb_grouping", False),
])
def test_the_scan_sees_every_form_of_import(monkeypatch, source, caught):
    module = REPO / "transforms" / "timeline" / "_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert bool(synthetic_imports(module)) is caught


def test_the_generator_reads_reference_data_only_through_transforms_reference():
    """No module of the generator opens a packaged file itself or names the reference data folder."""
    offenders = []
    for path in sorted(SYNTHETIC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = _imported_modules(node, _module_name(path), path.name == "__init__.py")
            if any(n.startswith("importlib.resources") or n == "importlib" for n in names):
                offenders.append(f"{path.name}:{node.lineno} imports importlib")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    "reference/data" in node.value or "reference.data" in node.value):
                offenders.append(f"{path.name}:{node.lineno} names the reference data")
    assert offenders == []
