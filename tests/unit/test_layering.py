"""The layering rules of DESIGN.md, read from the source (imports anywhere in a module, lazy ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "common", "service", "workers", "vitalstream", "loadtest")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


MODULES = _modules()


def _imports(name: str, *, at_import_time: bool = False) -> set[str]:
    """Every module ``name`` imports (absolute names; ``from a import b`` counts ``a.b`` when ``b`` is a module).

    ``at_import_time``: only the module-level statements (no function-level or ``TYPE_CHECKING`` imports).
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in tree.body if at_import_time else ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


FORBIDDEN = {
    "workers.stages": ("boto3", "botocore", "aiobotocore", "workers.sources", "workers.sinks", "workers.warehouse",
                       "workers.runtime", "workers.pipelines", "workers.formats"),
    "workers.formats": ("boto3", "botocore", "aiobotocore", "workers.sources", "workers.sinks", "workers.warehouse",
                        "workers.runtime", "workers.pipelines", "workers.stages"),
    "workers.warehouse": ("workers.stages", "workers.formats", "workers.sources", "workers.pipelines"),
    "workers.runtime": ("workers.sources", "workers.sinks", "workers.warehouse", "workers.pipelines",
                        "workers.stages", "workers.formats"),
    "workers.sources": ("workers.sinks", "workers.warehouse", "workers.pipelines"),
    "workers.sinks": ("workers.sources", "workers.warehouse", "workers.pipelines"),
    "service": ("workers", "vitalstream"),
    "workers": ("service", "vitalstream", "tests"),
    "schemas": ("common", "service", "workers", "vitalstream"),
    "common": ("service", "workers", "vitalstream"),
    # The campaigns' fleet model, ground truth and reconciliation see the project only through its data contracts.
    **{f"loadtest.{m}": ("common", "service", "workers", "vitalstream")
       for m in ("fleet", "truth", "reconcile", "journal", "shapes", "driver")},
}  # fmt: skip


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    offences = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if _under(name, layer)
        for target in _imports(name)
        for banned in FORBIDDEN[layer]
        if _under(target, banned)
    )
    assert offences == []


def test_one_warehouse_entry_point_and_no_batchload() -> None:
    assert not (ROOT / "workers" / "batchload").exists()
    assert not list((ROOT / "workers" / "stages").glob("parse_*.py"))
    openers = [
        name for name in MODULES if _under(name, "workers.warehouse") and "def open_loader" in MODULES[name].read_text()
    ]
    assert openers == ["workers.warehouse.open"]
    for pipeline in ("vitals", "ehr", "claims"):
        assert "workers.warehouse.open" in _imports(f"workers.pipelines.{pipeline}")


def test_no_import_cycles() -> None:
    graph = {name: {t for t in _imports(name, at_import_time=True) if t in MODULES and t != name} for name in MODULES}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []
