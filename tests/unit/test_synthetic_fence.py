"""The synthetic generator and the sandbox registry are fenced: no production module imports them (only the
commands that exist to run them), and the generator reads reference data only through `transforms.reference`.

`transforms/synthetic/` ships in the package because `ktt demo` and `ktt generate` write synthetic
worlds, `transforms/sandbox/` because `ktt sandbox` and `ktt demo` run a registry to rehearse against;
everything else must run on a municipality's real data, against a real registry, without them. The scan reads the source
(AST), so an import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCTION = ("transforms", "assets", "pipelines")
SYNTHETIC = REPO / "transforms" / "synthetic"
SANDBOX = REPO / "transforms" / "sandbox"
# the CLI commands that generate data or run the sandbox, by module and function name
ALLOWED = {("pipelines/cli.py", "cmd_generate"), ("pipelines/cli.py", "cmd_demo")}
ALLOWED_SANDBOX = {("pipelines/cli.py", "cmd_demo"), ("pipelines/cli.py", "_demo_sandbox"),
                   ("pipelines/cli.py", "_print_demo_delivery"), ("pipelines/cli_delivery.py", "cmd_sandbox_init"),
                   ("pipelines/cli_delivery.py", "cmd_sandbox")}


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


def synthetic_imports(path: Path, package: str = "transforms.synthetic") -> list[tuple[str, int]]:
    """(enclosing function or '<module>', line) of every import of `package` in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module, is_package = _module_name(path), path.name == "__init__.py"
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope
            names = _imported_modules(child, module, is_package)
            if any(n == package or n.startswith(f"{package}.") for n in names):
                found.append((scope, child.lineno))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def production_modules() -> list[Path]:
    return sorted(p for folder in PRODUCTION for p in (REPO / folder).rglob("*.py")
                  if SYNTHETIC not in p.parents and SANDBOX not in p.parents)


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


def test_no_production_module_imports_the_sandbox_registry():
    """Delivery must reach a real registry without the sandbox: only the commands that run it import it."""
    used = {(p.relative_to(REPO).as_posix(), scope) for p in production_modules()
            for scope, _ in synthetic_imports(p, "transforms.sandbox")}
    assert used == ALLOWED_SANDBOX


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
    """No module of the generator opens another package's files (its own, e.g. the synthetic formats' mappings,
    it may) or names the reference data folder."""
    offenders = []
    for path in sorted(SYNTHETIC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "files":
                packages = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if not packages or any(not p.startswith("transforms.synthetic") for p in packages):
                    offenders.append(f"{path.name}:{node.lineno} opens a package's files outside the generator")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    "reference/data" in node.value or "reference.data" in node.value):
                offenders.append(f"{path.name}:{node.lineno} names the reference data")
    assert offenders == []
