"""The architecture as data: the packages in layers, and which modules are pure.

One rule, read by tests/unit/test_architecture.py and by scripts/mutate.py:
- `LAYERS` lists the packages of `dns_server` from the bottom up.  A module may import modules of
  its own layer and of the layers below it, never one above: errors <- protocol <- logs <- cluster
  <- cluster.sources <- config <- chain <- plugins <- serving and metrics <- tools (explain, check)
  <- the composition root (app, supervisor, cli).  Within `cluster`, the sources sit above the model:
  the model never imports a source.
- A module is *pure* when neither it nor anything of ours it imports (transitively) imports an
  I/O module (`IO_MODULES`): sockets, threads, the event loop, the clock, files by path, the
  Kubernetes client.  The pure core is where mutation testing runs; `MUST_BE_PURE` are the
  packages that must be pure in full.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dns_server"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("protocol",),
    ("observability.logs",),
    ("cluster",),
    ("cluster.sources",),
    ("config",),
    ("chain",),
    ("plugins",),
    ("serving", "observability.metrics"),
    ("tools",),
    ("app", "supervisor", "cli", "__main__"),
)
# Pure in full: the DNS vocabulary and codec, the cluster model the answers read, the chain that makes them.
# (The registry takes a lock: it is the one writer, publishing from the sources' threads.)
MUST_BE_PURE = ("protocol", "cluster.records", "cluster.snapshot", "cluster.scope", "chain")
IO_MODULES = frozenset({"asyncio", "socket", "selectors", "threading", "kubernetes", "yaml", "yaml_rs", "urllib",
                        "http", "time", "subprocess", "os", "glob", "shutil", "uvloop", "concurrent", "signal"})


@cache
def modules() -> list[str]:
    """Every module of the package, dotted, relative to `dns_server` (`plugins.forward.outbound`).

    A package counts as a module when its `__init__.py` has code.
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            if not path.read_text().strip():
                continue
            parts = parts[:-1]
        if parts:
            found.append(".".join(parts))
    return found


def path_of(module: str) -> Path:
    path = PACKAGE / f"{module.replace('.', '/')}.py"
    return path if path.is_file() else PACKAGE / module.replace(".", "/") / "__init__.py"


@cache
def imports_of(module: str) -> frozenset[str]:
    """The absolute names a module imports (`dns_server.x.y` for ours)."""
    tree = ast.parse(path_of(module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "dns_server" or node.module.startswith("dns_server."):
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


@cache
def ours(module: str) -> frozenset[str]:
    """The modules of ours a module imports (relative names, as `modules()` gives them)."""
    known = set(modules())
    return frozenset(name[len("dns_server."):] for name in imports_of(module)
                     if name.startswith("dns_server.") and name[len("dns_server."):] in known)


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the deepest package a module lies in."""
    best, best_len = -1, -1
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and len(package) > best_len:
                best, best_len = index, len(package)
    if best < 0:
        raise ValueError(f"dns_server.{module} lies in no layer of tests/layers.py")
    return best


@cache
def io_reached(module: str) -> frozenset[str]:
    """The I/O modules a module imports, itself or through modules of ours."""
    reached, pending = {module}, [module]
    while pending:
        for inner in ours(pending.pop()):
            if inner not in reached:
                reached.add(inner)
                pending.append(inner)
    return frozenset(name for inner in reached for name in imports_of(inner) if name.split(".")[0] in IO_MODULES)


def pure_modules() -> list[str]:
    """The pure core: every module that reaches no I/O."""
    return [module for module in modules() if not io_reached(module)]
