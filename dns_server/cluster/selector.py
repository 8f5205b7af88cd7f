"""Kubernetes label selectors, matched here for what the API server matches on a list (`labelSelector`).

The server passes `labels` and `namespace_labels` to the API, which lists only matching objects;
`dns-server explain` lists everything once and matches here, so it can say which objects a
selector left out.  The grammar is the one `kubernetes` setup checks: requirements separated by
commas, each `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)` or
`key notin (a,b)`.
"""

from __future__ import annotations

import re
from typing import Mapping

_SET = re.compile(r"\s*(\S+)\s+(in|notin)\s*\(([^)]*)\)\s*")
_EQUALITY = re.compile(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*")


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether an object with these labels is selected (an empty selector selects everything)."""
    return all(_requirement(part, labels) for part in re.split(r",(?![^(]*\))", selector) if part.strip())


def _requirement(text: str, labels: Mapping[str, str]) -> bool:
    found = _SET.fullmatch(text)
    if found:
        key, operator, values = found.groups()
        listed = {value.strip() for value in values.split(",")}
        return (labels.get(key) in listed) if operator == "in" else labels.get(key) not in listed
    found = _EQUALITY.fullmatch(text)
    if found:
        key, operator, value = found.groups()
        return (labels.get(key) == value) == (operator != "!=")
    key = text.strip()
    return key[1:].strip() not in labels if key.startswith("!") else key in labels
