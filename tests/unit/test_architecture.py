"""The import graph keeps the architecture visible: a pure core, and dependencies pointing one way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dns_server"
PURE_CORE = ["records", "snapshot", "qname", "resolver", "wire", "encode", "config", "scope", "cache", "upstreams",
             "hosts", "answer", "answer_table"]
IO_MODULES = {"asyncio", "socket", "selectors", "threading", "kubernetes", "yaml", "yaml_rs", "urllib", "http",
              "time", "subprocess", "os"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module.replace('.', '/')}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_does_no_io() -> None:
    for module in PURE_CORE:
        io = {name for name in imports_of(module) if name.split(".")[0] in IO_MODULES}
        assert not io, f"dns_server.{module} imports {io}: the core must stay free of I/O"


def test_nothing_imports_the_composition_root() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = str(path.relative_to(PACKAGE).with_suffix("")).replace("/", ".")
        if module not in ("app", "cli", "__main__"):
            assert "dns_server.app" not in imports_of(module), f"{module} imports the composition root"


def test_sources_never_reach_the_answer_side() -> None:
    answer_side = {"dns_server.resolver", "dns_server.pipeline", "dns_server.encode", "dns_server.transport"}
    for path in (PACKAGE / "sources").glob("*.py"):
        module = f"sources.{path.stem}"
        assert not {n for n in imports_of(module) if any(n.startswith(a) for a in answer_side)}, module


def test_the_forwarder_sits_below_the_pipeline() -> None:
    """The pipeline reaches the forwarder only through its Upstream protocol; the forwarder never reaches up."""
    for module in ("forward", "cache", "upstreams"):
        upward = {n for n in imports_of(module) if n.startswith(("dns_server.pipeline", "dns_server.transport",
                                                                   "dns_server.resolver"))}
        assert not upward, f"dns_server.{module} imports {upward}"
    assert "dns_server.forward" not in imports_of("pipeline")
