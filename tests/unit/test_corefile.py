"""The Corefile language as CoreDNS 1.14 (coredns/caddy's caddyfile package) reads it."""

from __future__ import annotations

from pathlib import Path

from dns_server.corefile import parse_corefile

CORE_FILES = Path(__file__).resolve().parents[1] / "data" / "corefiles"


def test_the_kubeadm_corefile_has_coredns_s_configuration_digest() -> None:
    syntax = parse_corefile(CORE_FILES / "kubeadm-before-cache-disable.Corefile")
    assert syntax.sha512.startswith("591cf328cccc12bc490481273e738df5")
    assert [d.name.text for d in syntax.blocks[0].directives][:3] == ["errors", "health", "ready"]
