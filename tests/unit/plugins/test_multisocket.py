"""`multisocket [N]` and `--workers N`: the number of worker processes, read or refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from dns_server.cli import build_parser, load
from dns_server.errors import ConfigError


def workers_of(corefile: str, *flags: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("GOMAXPROCS", "5")  # the default, so that the machine does not matter
    path = tmp_path / "Corefile"
    path.write_text(corefile)
    args = build_parser().parse_args(["-conf", str(path), *flags])
    return load(args, set()).workers


@pytest.mark.parametrize("corefile, flags, workers", [
    (". {\n whoami\n}\n", [], 5),
    (". {\n multisocket\n whoami\n}\n", [], 5),
    (". {\n multisocket 3\n whoami\n}\n", [], 3),
    (". {\n whoami\n}\n", ["--workers", "2"], 2),
    (".:53 {\n multisocket 3\n whoami\n}\n.:54 {\n whoami\n}\n.:55 {\n multisocket 3\n whoami\n}\n", [], 3),
])
def test_the_number_of_workers(corefile: str, flags: list[str], workers: int, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert workers_of(corefile, *flags, tmp_path=tmp_path, monkeypatch=monkeypatch) == workers


@pytest.mark.parametrize("corefile, flags, message", [
    (". {\n multisocket x\n}\n", [], 'plugin/multisocket: {}:2 - Error during parsing: invalid num sockets: '
                                     'strconv.Atoi: parsing "x": invalid syntax'),
    (". {\n multisocket 0\n}\n", [], "{}:2 - Error during parsing: num sockets can not be zero or negative: 0"),
    (". {\n multisocket 1025\n}\n", [], "{}:2 - Error during parsing: num sockets exceeds maximum (1024): 1025"),
    (". {\n multisocket 2 3\n}\n", [], "{}:2 - Error during parsing: Wrong argument count or unexpected line ending "
                                       "after '3'"),
    (". {\n multisocket 2\n multisocket 2\n}\n", [], "{}:3 - Error during parsing: this plugin can only be used "
                                                     "once per Server Block"),
    (". {\n multisocket 2 {\n  x\n }\n}\n", [], "{}:3 - Error during parsing: unknown property 'x'"),
    (".:53 {\n multisocket 2\n}\n.:54 {\n multisocket\n}\n", [],
     "plugin/multisocket: {}:5 asks for a number of workers other than {}:2"),
    (". {\n multisocket 2\n}\n", ["--workers", "3"], "--workers and multisocket ({}:2) both set the number of workers"),
    (". {\n whoami\n}\n", ["--workers", "0"], "--workers 0: at least one worker answers"),
])
def test_a_bad_number_of_workers_is_refused_at_start(corefile: str, flags: list[str], message: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as raised:
        workers_of(corefile, *flags, tmp_path=tmp_path, monkeypatch=monkeypatch)
    assert message.format(*[tmp_path / "Corefile"] * message.count("{}")) in str(raised.value)


@pytest.mark.parametrize("flags, workers", [([], 5), (["--workers", "3"], 3)])
def test_the_number_of_workers_without_a_corefile(flags: list[str], workers: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMAXPROCS", "5")
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.7\n")
    args = build_parser().parse_args(["--fixtures", "zones", "--resolv-conf", str(tmp_path / "resolv.conf"), *flags])
    assert load(args, {"fixtures"}).workers == workers
