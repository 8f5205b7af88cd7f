"""The import graph keeps the architecture visible: layers of packages, imports pointing down, a pure core.

The rule is data in tests/layers.py, shared with scripts/mutate.py (which mutates the pure core).
"""

from __future__ import annotations

from tests.layers import (
    LAYERS,
    MUST_BE_PURE,
    io_reached,
    layer_of,
    modules,
    ours,
    pure_modules,
)


def test_every_module_lies_in_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    upward = [f"dns_server.{module} imports dns_server.{imported}, a layer above it"
              for module in modules() for imported in ours(module) if layer_of(imported) > layer_of(module)]
    assert not upward, "\n".join(upward)


def test_the_core_does_no_io() -> None:
    for module in modules():
        if any(module == p or module.startswith(p + ".") for p in MUST_BE_PURE):
            assert not io_reached(module), f"dns_server.{module} reaches {set(io_reached(module))}: it must stay pure"


def test_the_pure_core_is_what_the_answers_are_made_of() -> None:
    """The modules that make an answer are pure (the mutation script tests exactly this list)."""
    pure = set(pure_modules())
    for module in ("protocol.wire", "protocol.encode", "protocol.answer", "cluster.snapshot",
                   "plugins.kubernetes.qname", "plugins.kubernetes.zone", "plugins.k8s_external", "serving.answer_table",
                   "plugins.template", "plugins.template.gotemplate", "plugins.template.record", "plugins.template.setup"):
        assert module in pure, f"dns_server.{module} is no longer pure: {set(io_reached(module))}"


def test_nothing_imports_the_composition_root() -> None:
    top = len(LAYERS) - 1
    for module in modules():
        if layer_of(module) != top:
            assert not {m for m in ours(module) if layer_of(m) == top}, f"{module} imports the composition root"


def test_configuration_knows_no_plugin() -> None:
    """Each plugin registers its own setup: the configuration reads directives without knowing them."""
    for module in modules():
        if module == "config" or module.startswith("config."):
            plugins = {m for m in ours(module) if m.startswith("plugins")}
            assert not plugins, f"dns_server.{module} imports a plugin"


def test_check_shares_no_code_with_what_it_judges() -> None:
    """`dns-server check` reads the objects and the Corefile as the server does, and derives answers on its own."""
    for module in modules():
        if module in ("tools.check", "tools.compare", "tools.expectations", "tools.junit"):
            judged = {m for m in ours(module) if m.startswith(("serving", "chain", "plugins."))}
            assert not judged, f"dns_server.{module} imports {judged}"
