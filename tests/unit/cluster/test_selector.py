"""Label selectors matched as the API server matches a list's labelSelector (explain applies them itself)."""

from __future__ import annotations

import pytest

from dns_server.cluster.selector import matches

LABELS = {"app": "web", "tier": "front", "canary": ""}


@pytest.mark.parametrize("selector, selected", [
    ("", True),
    ("app=web", True), ("app==web", True), ("app=db", False),
    ("app!=db", True), ("app!=web", False), ("missing!=x", True),
    ("tier in (front, back)", True), ("tier in (back)", False), ("missing in (x)", False),
    ("tier notin (back)", True), ("tier notin (front,back)", False), ("missing notin (x)", True),
    ("canary", True), ("!canary", False), ("missing", False), ("!missing", True),
    ("app=web,tier in (front,back),!missing", True), ("app=web,tier=back", False),
])
def test_a_selector_selects_as_the_api_server_does(selector: str, selected: bool) -> None:
    assert matches(selector, LABELS) is selected
