"""The `errors` plugin: one line per failed query, or a count of them per period.

Rules this module keeps:
- A failure is logged as CoreDNS's errors plugin logs it: `[ERROR] plugin/errors: 2 example.org. A:
  <reason>` (the rcode as a number, the name fully qualified, the type's mnemonic).
- `consolidate DURATION REGEXP [LEVEL] [show_first]`: a failure whose reason matches the first such
  REGEXP (searched, as Go's `MatchString`) is only counted; DURATION after the first one counted,
  `N errors like 'REGEXP' occurred in last DURATION` is logged at LEVEL (default error) and the
  count starts again.  With `show_first` the first one is logged at once, at LEVEL, and the count
  of a period that saw only that one is not logged.  After `close` nothing is consolidated and
  the periods still open are logged at once, as CoreDNS does at shutdown.
- No clock is read here: the owner passes `now` (any monotonic clock, in seconds) and calls
  `flush(now)` about once a second, which ends the periods whose time is up.  A report ends its
  own pattern's expired period first, so no failure is counted in a period it came after.
- `stacktrace`: a failure reported with the exception behind it (an internal error) is logged
  with its traceback.
- One thread (the event loop's) calls every method.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import format_duration
from dns_server.config.setup import Reader, SetupContext, last
from dns_server.config.syntax import CorefileError, Directive
from dns_server.observability.logs import LEVELS
from dns_server.plugins.log import type_text
from dns_server.protocol.names import zone_text

LOG_LEVELS = ("warning", "error", "info", "debug")  # errors `consolidate ... [LEVEL]`

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Period:
    """One `consolidate` rule and the failures it has counted since `started`."""

    rule: ConsolidateRule
    pattern: re.Pattern[str]
    level: int
    count: int = 0
    started: float | None = None


class ErrorLog:
    """The `errors` plugin of one server block."""

    def __init__(self, settings: ErrorsSettings, logger: logging.Logger = log) -> None:
        self._log = logger
        self._stacktrace = settings.stacktrace
        self._periods = tuple(_Period(rule, re.compile(rule.pattern), LEVELS[rule.level])
                              for rule in settings.consolidate)
        self._closed = False

    def report(self, rcode: int, name: str, qtype: int, reason: str, now: float,
               error: BaseException | None = None) -> None:
        """A query failed: `name` as the resolver has it (lower case, no trailing dot), `reason` the error text."""
        qname, type_name = zone_text(name), type_text(qtype)
        line = f"{rcode} {qname} {type_name}: {reason}"
        fields = {"rcode": rcode, "qname": qname, "qtype": type_name}
        period = None if self._closed else next((p for p in self._periods if p.pattern.search(reason)), None)
        if period is None:
            self._write(logging.ERROR, line, fields, error)
            return
        self._expire(period, now)
        period.count += 1
        if period.count == 1:
            period.started = now
            if period.rule.show_first:
                self._write(period.level, line, fields, error)

    def flush(self, now: float) -> None:
        """Log the count of every period whose DURATION has passed, and start those periods again."""
        for period in self._periods:
            self._expire(period, now)

    def close(self) -> None:
        """Log the counts of the periods still open; from now on every failure gets its own line."""
        for period in self._periods:
            if period.started is not None:
                self._summarise(period)
        self._closed = True

    def _expire(self, period: _Period, now: float) -> None:
        if period.started is not None and now - period.started >= period.rule.duration:
            self._summarise(period)

    def _summarise(self, period: _Period) -> None:
        if period.count > 1 or not period.rule.show_first:
            self._log.log(period.level, "%d errors like '%s' occurred in last %s", period.count,
                          period.rule.pattern, format_duration(period.rule.duration),
                          extra={"count": period.count, "pattern": period.rule.pattern})
        period.count = 0
        period.started = None

    def _write(self, level: int, line: str, fields: dict[str, object], error: BaseException | None) -> None:
        exc_info = error if self._stacktrace and error is not None else None
        self._log.log(level, line, extra=fields, exc_info=exc_info)


# --- the directive ---

@dataclass(frozen=True, slots=True)
class ConsolidateRule:
    """errors `consolidate DURATION REGEXP [LEVEL] [show_first]`."""

    duration: float
    pattern: str
    level: str = "error"  # warning | error | info | debug
    show_first: bool = False


@dataclass(frozen=True, slots=True)
class ErrorsSettings:
    consolidate: tuple[ConsolidateRule, ...] = ()
    stacktrace: bool = False


def setup(found: Sequence[Directive], context: SetupContext) -> ErrorsSettings:
    plugin = Reader("errors")
    directive = plugin.once(found)
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    if directive.args and directive.args[0].text != "stdout":
        raise plugin.error(directive.args[0], f"invalid log file: {directive.args[0].text}")
    rules: list[ConsolidateRule] = []
    stacktrace = False
    for option in plugin.options(directive):
        if option.name.text == "stacktrace":
            plugin.no_args(option)
            stacktrace = True
        elif option.name.text == "consolidate":
            rules.append(_consolidate(plugin, option))
        else:
            raise CorefileError(f"plugin/errors: {option.name.location} - Syntax error: Unexpected token "
                                f"'{option.name.text}', expecting 'Unknown field {option.name.text}'")
    return ErrorsSettings(tuple(rules), stacktrace)


def _consolidate(plugin: Reader, option: Directive) -> ConsolidateRule:
    """`consolidate DURATION REGEXP [LEVEL] [show_first]`."""
    if not 2 <= len(option.args) <= 4:
        raise plugin.arg_error(last(option))
    duration = plugin.duration(option.args[0])
    pattern = option.args[1].text
    try:
        re.compile(pattern)
    except re.error as error:
        raise plugin.error(option.args[1], f"error parsing regexp: {error}: `{pattern}`") from None
    level: str | None = None
    show_first = False
    for token in option.args[2:]:
        if token.text in LOG_LEVELS:
            if level is not None:
                raise plugin.error(token, "multiple log levels specified in consolidate")
            if show_first:
                raise plugin.error(token, "log level must come before show_first in consolidate")
            level = token.text
        elif token.text == "show_first":
            show_first = True
        else:
            raise plugin.error(token, f"unknown option in consolidate: {token.text}")
    return ConsolidateRule(duration, pattern, level or "error", show_first)


PLUGIN = PluginSpec("errors", setup, in_chain=True)
