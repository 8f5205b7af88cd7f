"""The Corefile language as CoreDNS 1.14 reads it (coredns/caddy's caddyfile package, register.go,
plugin/normalize.go, plugin/pkg/cidr): lexing, server blocks, directives, environment variables,
imports and snippets, keys and reverse zones, and every error message."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from pathlib import Path
from typing import Union

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dns_server.config.corefile import (
    MAX_IMPORT_EXPANSIONS,
    parse_corefile,
    parse_text,
    tokenize,
)
from dns_server.config.syntax import (
    Address,
    CorefileError,
    Directive,
    Token,
    normalize_zones,
    parse_address,
    reverse_zones,
)

CORE_FILES = Path(__file__).resolve().parents[2] / "data" / "corefiles"

Shape = tuple[str, tuple[str, ...], Union[tuple["Shape", ...], None]]


def shape(directive: Directive) -> Shape:
    """A directive as plain values: (name, args, block lines or None)."""
    block = None if directive.block is None else tuple(shape(line) for line in directive.block)
    return directive.name.text, tuple(arg.text for arg in directive.args), block


def structure(text: str, env: dict[str, str] | None = None) -> list[tuple[tuple[str, ...], list[Shape]]]:
    syntax = parse_text(text, env={} if env is None else env)
    return [(tuple(key.text for key in block.keys), [shape(d) for d in block.directives]) for block in syntax.blocks]


def error(text: str, env: dict[str, str] | None = None, directory: Path = Path(".")) -> str:
    with pytest.raises(CorefileError) as raised:
        parse_text(text, env={} if env is None else env, directory=directory)
    return str(raised.value)


def key(text: str) -> Token:
    return Token(text, "Corefile", 7, False)


# Lexing (caddyfile/lexer.go)

LEXING = [
    ("white space separates", "a b\tc\n  d\n", [("a", 1), ("b", 1), ("c", 1), ("d", 2)]),
    ("odd spacing, no final newline", "  a    b\t\t \n\n\n   c", [("a", 1), ("b", 1), ("c", 4)]),
    ("\\r is dropped", "a\r\nb\r\n", [("a", 1), ("b", 2)]),
    ("\\r inside a word is dropped too", "fo\ro", [("foo", 1)]),
    ("a comment line", "# x y\na", [("a", 2)]),
    ("a comment after words", "a b # c d\ne", [("a", 1), ("b", 1), ("e", 2)]),
    ("# inside a word hides the rest of that word", "foo#bar baz\nq", [("foo", 1), ("baz", 1), ("q", 2)]),
    ("# inside quotes is literal", '"a # b" c', [("a # b", 1), ("c", 1)]),
    ("quotes keep spaces", '"a b"  c', [("a b", 1), ("c", 1)]),
    ("a quote inside a word is literal", 'a"b c"', [('a"b', 1), ('c"', 1)]),
    ("\\\" is the only escape", r'"a\"b \. \\"', [('a"b \\. \\\\', 1)]),
    ("a regex keeps its backslashes", r'"^(?:[^.]+\.){4,}$"', [(r"^(?:[^.]+\.){4,}$", 1)]),
    ("a quoted token spans lines", '"a\nb" c\nd', [("a\nb", 1), ("c", 2), ("d", 3)]),
    ('"" is an empty token', '"" a', [("", 1), ("a", 1)]),
    ("a lone quote at the end is nothing", "a \"", [("a", 1)]),
    ("an unterminated quote runs to the end", 'a "b c', [("a", 1), ("b c", 1)]),
    ("braces are structure only as whole tokens", ".:53{ {$PORT} {>id} {combined} {1}svc.cluster.local {",
     [(".:53{", 1), ("{$PORT}", 1), ("{>id}", 1), ("{combined}", 1), ("{1}svc.cluster.local", 1), ("{", 1)]),
    ("a byte order mark is dropped", "\ufeff. {", [(".", 1), ("{", 1)]),
    ("Go's white space, not Python's", "a\u00a0b\u2003c\x1cd", [("a", 1), ("b", 1), ("c\x1cd", 1)]),
    ("tabs and blank lines", "\t.\t{\n\n\twhoami  \n}", [(".", 1), ("{", 1), ("whoami", 3), ("}", 4)]),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in LEXING], ids=[case[0] for case in LEXING])
def test_lexing(text: str, expected: list[tuple[str, int]]) -> None:
    assert [(token.text, token.line) for token in tokenize(text)] == expected


def test_a_token_is_quoted_only_when_it_starts_with_a_quote() -> None:
    assert [token.quoted for token in tokenize('"a" b"c" ""')] == [True, False, True]
    assert tokenize("x", "custom/a.server")[0].location == "custom/a.server:1"


WORDS = st.text(st.sampled_from("az.:/{}()$%>,*?[]'\u00e9\\\"# \t\n\r\u00a0\x1c"), max_size=8)


def printed(token: str) -> str:
    """A token written so that caddy's lexer reads it back, or "" if caddy's quoting cannot."""
    if token and not any(ch in token for ch in ' \t\n\r\u00a0#"'):
        return token
    if token.endswith("\\") or '\\"' in token:
        return ""
    return '"' + token.replace('"', '\\"') + '"'


@given(st.lists(st.lists(WORDS, max_size=4), max_size=5),
       st.sampled_from([" ", "\t", "  \t "]))
def test_printed_tokens_lex_back_to_themselves(lines: list[list[str]], gap: str) -> None:
    assume(all(printed(token) for line in lines for token in line))
    text, expected = "", []
    for line in lines:
        for token in line:
            text += gap if text and not text.endswith("\n") else ""
            expected.append((token, text.count("\n") + 1))
            text += printed(token)
        text += "\n"
    assert [(token.text, token.line) for token in tokenize(text)] == expected


# Server blocks and directives (caddyfile/parse.go)

STRUCTURE = [
    ("several keys", "a.org b.org:5353 {\n whoami\n}", [(("a.org", "b.org:5353"), [("whoami", (), None)])]),
    ("a trailing comma continues the keys", "a.org,\n  b.org, c.org {\n}", [(("a.org", "b.org", "c.org"), [])]),
    ("the brace on the next line", ".\n{\n whoami\n}", [((".",), [("whoami", (), None)])]),
    ("the brace-less single server", "example.org\nwhoami\nlog stdout",
     [(("example.org",), [("whoami", (), None), ("log", ("stdout",), None)])]),
    ("a line of keys alone", "example.org", [(("example.org",), [])]),
    ("an empty block", ". {\n}", [((".",), [])]),
    ("an empty block on one line", ". { }", [((".",), [])]),
    ("an empty file", "", []),
    ("comments only", "# nothing here\n   # nor here", []),
    ('an empty key is dropped', '"" . {\n}', [((".",), [])]),
    ("two blocks", ". {\n whoami\n}\nexample.org:1053 {\n log\n}",
     [((".",), [("whoami", (), None)]), (("example.org:1053",), [("log", (), None)])]),
    ("a block may start after a closing brace", ". {\n} example.org {\n}", [((".",), []), (("example.org",), [])]),
    ("a brace glued to a key is part of the key", ".:53{\n}", [((".:53{",), [])]),
    ("arguments end at the line end", ". {\n forward . 1.1.1.1\n 8.8.8.8\n}",
     [((".",), [("forward", (".", "1.1.1.1"), None), ("8.8.8.8", (), None)])]),
    ("a block holds subdirective lines", ". {\n forward . 1.1.1.1 {\n  except a.org b.org\n  force_tcp\n }\n}",
     [((".",), [("forward", (".", "1.1.1.1"), (("except", ("a.org", "b.org"), None), ("force_tcp", (), None)))])]),
    ("an empty directive block", ". {\n health {\n }\n}", [((".",), [("health", (), ())])]),
    ("a block on one line", ". {\n forward . 1.1.1.1 { max_concurrent 1000 }\n}",
     [((".",), [("forward", (".", "1.1.1.1"), (("max_concurrent", ("1000",), None),))])]),
    ("a closing brace on a subdirective's line", ". {\n kubernetes cluster.local {\n  namespaces a b }\n}",
     [((".",), [("kubernetes", ("cluster.local",), (("namespaces", ("a", "b"), None),))])]),
    ("nested blocks", ". {\n a {\n  b c {\n   d\n  }\n  e\n }\n}",
     [((".",), [("a", (), (("b", ("c",), (("d", (), None),)), ("e", (), None)))])]),
    ("closing braces on one line", ". {\n a {\n  b {\n   c\n  } }\n}",
     [((".",), [("a", (), (("b", (), (("c", (), None),)),))])]),
    ("a quoted brace is still a brace", '. {\n a "{"\n  b\n "}"\n}', [((".",), [("a", (), (("b", (), None),))])]),
    ("braces inside words are arguments",
     '. {\n log . "{proto} Request: {name}"\n rewrite name regex (.*)\\.example\\.com {1}.default.svc.cluster.local\n}',
     [((".",), [("log", (".", "{proto} Request: {name}"), None),
                ("rewrite", ("name", "regex", "(.*)\\.example\\.com", "{1}.default.svc.cluster.local"), None)])]),
    ("a quoted token spanning lines continues on its last line", '. {\n template "a\nb" c\n whoami\n}',
     [((".",), [("template", ("a\nb", "c"), None), ("whoami", (), None)])]),
    ("import not at the start of a line is an argument", ". {\n basicauth / import password\n}",
     [((".",), [("basicauth", ("/", "import", "password"), None)])]),
    ("any directive name is accepted", ". {\n proxy . 8.8.8.8\n}", [((".",), [("proxy", (".", "8.8.8.8"), None)])]),
    ("a directive outside a block becomes a key", "health\n. {\n whoami\n}",
     [(("health",), [(".", (), (("whoami", (), None),))])]),
    ("a snippet is spliced where it is imported", "(common) {\n errors\n cache 30\n}\n. {\n import common\n whoami\n}",
     [((".",), [("errors", (), None), ("cache", ("30",), None), ("whoami", (), None)])]),
    ("a snippet inside a plugin block", "(opts) {\n max_fails 3\n}\n. {\n forward . 1.1.1.1 {\n  import opts\n"
                                        "  force_tcp\n }\n}",
     [((".",), [("forward", (".", "1.1.1.1"), (("max_fails", ("3",), None), ("force_tcp", (), None)))])]),
    ("a snippet holding a server block", "(zone) {\n example.org {\n  whoami\n }\n}\nimport zone",
     [(("example.org",), [("whoami", (), None)])]),
    ("a snippet used twice, one empty", "(e) {\n}\n(l) {\n log\n}\na {\n import l\n import e\n}\nb {\n import l\n}",
     [(("a",), [("log", (), None)]), (("b",), [("log", (), None)])]),
    ("a parenthesised key beside others is a server", "(a) b {\n}", [(("(a)", "b"), [])]),
    ("closing braces indented like NodeLocal DNSCache's", "a:53 {\n    errors\n    }\nb:53 {\n    }",
     [(("a:53",), [("errors", (), None)]), (("b:53",), [])]),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in STRUCTURE], ids=[case[0] for case in STRUCTURE])
def test_structure(text: str, expected: list[tuple[tuple[str, ...], list[Shape]]]) -> None:
    assert structure(text) == expected


def test_tokens_carry_their_location() -> None:
    syntax = parse_text("\n.:53 {\n  forward . 1.1.1.1 {\n     force_tcp\n  }\n}\n", name="/etc/coredns/Corefile")
    block = syntax.blocks[0]
    forward = block.directives[0]
    assert (block.location, forward.name.location, forward.args[1].location) == (
        "/etc/coredns/Corefile:2", "/etc/coredns/Corefile:3", "/etc/coredns/Corefile:3")
    assert forward.block is not None and forward.block[0].name.location == "/etc/coredns/Corefile:4"
    assert (forward.args[0].quoted, parse_text('. {\n log "x"\n}').blocks[0].directives[0].args[0].quoted) == (
        False, True)


ERRORS = [
    ("a closing brace with nothing open", ". {\n whoami }\n}",
     "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace"),
    ("a server block on one line", ". { whoami }",
     "Corefile:1 - Error during parsing: Unexpected '}' because no matching opening brace"),
    ("a directive block left open", ". {\n forward . 1.1.1.1 {\n  force_tcp\n",
     "Corefile:3 - Error during parsing: Unexpected EOF"),
    ("a server block left open", ". {\n whoami\n",
     "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '}'"),
    ("a server block left open after a directive's block", ".:53 {\n forward . 1.1.1.1 {\n  force_tcp\n }\n",
     "Corefile:4 - Error during parsing: Unexpected EOF"),
    ("a server block left open after an empty directive block", ". {\n errors\n cache {\n }",
     "Corefile:4 - Error during parsing: Unexpected EOF"),
    ("a second server block left open after a directive's block", ". {\n whoami\n}\nb.org {\n log {\n }\n",
     "Corefile:6 - Error during parsing: Unexpected EOF"),
    ("a server block left open by a snippet's block", "(s) {\n log {\n }\n}\n. {\n import s\n",
     "Corefile:3 - Error during parsing: Unexpected EOF"),
    ("a brace and nothing else", ". {", "Corefile:1 - Syntax error: Unexpected token '{', expecting '}'"),
    ("a comma before the end", "a.org,", "Corefile:1 - Error during parsing: Unexpected EOF"),
    ("a comma before the brace", "a.org, {\n}",
     "Corefile:1 - Error during parsing: Expected another address but had '{' - check for extra comma"),
    ("import without a pattern", ". {\n import\n}",
     "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'import'"),
    ("import with two patterns", ". {\n import a b\n}",
     "Corefile:2 - Error during parsing: Import takes only one argument (glob pattern or file)"),
    ("import of nothing", 'import ""', "Corefile:1 - Error during parsing: Import requires a non-empty filepath"),
    ("a snippet declared twice", "(s) {\n}\n(s) {\n}",
     "Corefile:3 - Error during parsing: redeclaration of previously declared snippet s"),
    ("a snippet importing itself", "(s) {\n import s\n}",
     "Corefile:3 - Error during parsing: maximum snippet import depth (10000) exceeded"),
    ("snippets importing each other", "(a) {\n import b\n}\n(b) {\n import a\n}\n. {\n import a\n}",
     "Corefile:5 - Error during parsing: maximum snippet import depth (10000) exceeded"),
    ("a snippet without braces", "(s)\nwhoami", "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '{'"),
    ("a snippet left open", "(s) {\n whoami", "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '}'"),
    ("a block opening on the next line", ". {\n health\n {\n  lameduck 5s\n }\n}",
     "Corefile:3 - Error during parsing: Unexpected '{' without a directive: a block opens at the end of its "
     "directive's line"),
    ("a block line starting with a brace", ". {\n a {\n  b\n  {\n  }\n }\n}",
     "Corefile:4 - Error during parsing: Unexpected '{' without a directive: a block opens at the end of its "
     "directive's line"),
    ("words after a block", ". {\n health {\n  lameduck 5s\n } extra\n}",
     "Corefile:4 - Error during parsing: Unexpected 'extra' after '}': a block ends its line"),
    ("words after a nested block", ". {\n a {\n  b {\n   c\n  } extra\n }\n}",
     "Corefile:5 - Error during parsing: Unexpected 'extra' after '}': a block ends its line"),
]


@pytest.mark.parametrize("text,message", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_an_error_names_the_file_it_is_in(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(". {\n import extra.conf\n}\n")
    (tmp_path / "extra.conf").write_text("log\nwhoami }\n")
    with pytest.raises(CorefileError) as raised:
        parse_corefile(tmp_path / "Corefile")
    assert str(raised.value) == (f"{tmp_path}/extra.conf:2 - Error during parsing: "
                                 "Unexpected '}' because no matching opening brace")


def test_a_block_left_open_in_an_imported_file_is_named_there(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text("import blocks/*.conf\n")
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "a.conf").write_text("a.org {\n  cache {\n    success 100\n  }\n")
    with pytest.raises(CorefileError) as raised:
        parse_corefile(tmp_path / "Corefile")
    assert str(raised.value) == f"{tmp_path}/blocks/a.conf:4 - Error during parsing: Unexpected EOF"


def test_a_block_closed_in_the_importing_file_is_not_left_open(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(". {\n import extra.conf\n }\n}\n")
    (tmp_path / "extra.conf").write_text("log {\n")
    [block] = parse_corefile(tmp_path / "Corefile").blocks
    assert [shape(directive) for directive in block.directives] == [("log", (), ())]


def test_a_missing_corefile_is_one_line() -> None:
    with pytest.raises(CorefileError) as raised:
        parse_corefile(Path("/nonexistent/Corefile"))
    assert str(raised.value) == "open /nonexistent/Corefile: no such file or directory"


# Environment variables

ENVIRONMENT = [
    ("in keys", "{$ZONE}:{$PORT} {\n}", {"ZONE": "example.org", "PORT": "1053"}, [(("example.org:1053",), [])]),
    ("Windows style", "{%ZONE%} {\n}", {"ZONE": "example.org"}, [(("example.org",), [])]),
    ("both styles in one token", ". {\n a {%A%}-{$B}\n}", {"A": "x", "B": "y"}, [((".",), [("a", ("x-y",), None)])]),
    ("a value with spaces stays one token", ". {\n forward . {$UPSTREAMS}\n}", {"UPSTREAMS": "1.1.1.1 8.8.8.8"},
     [((".",), [("forward", (".", "1.1.1.1 8.8.8.8"), None)])]),
    ("inside quotes", '. {\n log . "{$FORMAT} {name}"\n}', {"FORMAT": "{remote}"},
     [((".",), [("log", (".", "{remote} {name}"), None)])]),
    ("an unset variable is empty", ". {\n log {$UNSET} x\n}", {}, [((".",), [("log", ("", "x"), None)])]),
    ("a key that ends up empty is dropped", "{$UNSET} . {\n}", {}, [((".",), [])]),
    ("{$} and {%%} are left alone", ". {\n a {$} {%%} {$X\n}", {"X": "x"},
     [((".",), [("a", ("{$}", "{%%}", "{$X"), None)])]),
    ("in a directive name", ". {\n {$PLUGIN} a\n}", {"PLUGIN": "whoami"}, [((".",), [("whoami", ("a",), None)])]),
    ("in a block", ". {\n forward . 1.1.1.1 {\n  max_fails {$FAILS}\n }\n}", {"FAILS": "3"},
     [((".",), [("forward", (".", "1.1.1.1"), (("max_fails", ("3",), None),))])]),
    ("a value naming another variable", ". {\n a {$A}\n}", {"A": "<{$B}>", "B": "b"},
     [((".",), [("a", ("<b>",), None)])]),
    ("in an import pattern", "(s) {\n log\n}\n. {\n import {$SNIPPET}\n}", {"SNIPPET": "s"},
     [((".",), [("log", (), None)])]),
]


@pytest.mark.parametrize("text,env,expected", [case[1:] for case in ENVIRONMENT], ids=[case[0] for case in ENVIRONMENT])
def test_environment(text: str, env: dict[str, str], expected: list[tuple[tuple[str, ...], list[Shape]]]) -> None:
    assert structure(text, env) == expected


def test_a_value_naming_itself_is_an_error_not_a_hang() -> None:
    assert error(". {\n log {$A}\n}", {"A": "x{$A}"}) == (
        "Corefile:2 - Error during parsing: environment variables in '{$A}' expand without end")


# import (plugin/import, caddyfile doImport)

def test_imports_are_relative_to_the_importing_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "snippets").mkdir()
    (tmp_path / "Corefile").write_text("(common) {\n errors\n}\nimport conf/*.server\n")
    (tmp_path / "conf" / "b.server").write_text("b.org {\n import ../snippets/log.conf\n}\n")
    (tmp_path / "conf" / "a.server").write_text("a.org {\n import common\n}\n")
    (tmp_path / "snippets" / "log.conf").write_text("\n\nlog . {\n class error\n}\n")
    syntax = parse_corefile(tmp_path / "Corefile")
    assert [(tuple(k.text for k in b.keys), [shape(d) for d in b.directives]) for b in syntax.blocks] == [
        (("a.org",), [("errors", (), None)]),
        (("b.org",), [("log", (".",), (("class", ("error",), None),))])]
    assert syntax.files == (tmp_path / "Corefile", tmp_path / "conf" / "a.server", tmp_path / "conf" / "b.server",
                            tmp_path / "snippets" / "log.conf")
    assert [b.location for b in syntax.blocks] == [f"{tmp_path}/conf/a.server:1", f"{tmp_path}/conf/b.server:1"]
    assert syntax.blocks[0].directives[0].name.location == f"{tmp_path}/Corefile:2"  # where the snippet was written
    assert syntax.blocks[1].directives[0].name.location == f"{tmp_path}/snippets/log.conf:3"


def test_an_import_in_a_plugin_block_and_at_the_end_of_a_block(tmp_path: Path) -> None:
    (tmp_path / "opts.conf").write_text("max_fails 3\nforce_tcp")
    (tmp_path / "more.override").write_text("log\n")
    text = ". {\n forward . 1.1.1.1 {\n  import opts.conf\n  expire 10s\n }\n import *.override\n}"
    syntax = parse_text(text, directory=tmp_path)
    assert [shape(d) for d in syntax.blocks[0].directives] == [
        ("forward", (".", "1.1.1.1"), (("max_fails", ("3",), None), ("force_tcp", (), None),
                                       ("expire", ("10s",), None))),
        ("log", (), None)]


def test_lines_of_different_files_never_join(tmp_path: Path) -> None:
    (tmp_path / "opts.conf").write_text("\n\n\nmax_fails 3")  # line 4, as `force_tcp` in the Corefile
    (tmp_path / "last.conf").write_text("\n" * 6 + "whoami")  # line 7, as `cache`
    text = ". {\n forward . 1.1.1.1 {\n  import opts.conf\n  force_tcp\n }\n import last.conf\n cache\n}"
    assert [shape(d) for d in parse_text(text, directory=tmp_path).blocks[0].directives] == [
        ("forward", (".", "1.1.1.1"), (("max_fails", ("3",), None), ("force_tcp", (), None))),
        ("whoami", (), None), ("cache", (), None)]


def test_a_glob_matching_nothing_only_warns(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.WARNING, logger="dns_server.config.corefile"):
        syntax = parse_text(". {\n whoami\n import custom/*.override\n}\nimport custom/*.server", directory=tmp_path)
    assert [shape(d) for d in syntax.blocks[0].directives] == [("whoami", (), None)]
    assert [record.getMessage() for record in caplog.records] == [
        "No files matching import glob pattern: custom/*.override",
        "No files matching import glob pattern: custom/*.server"]


def test_glob_matches_are_sorted_and_include_dot_files(tmp_path: Path) -> None:
    for name in ("b.server", "a.server", ".hidden.server", "a.server.bak"):
        (tmp_path / name).write_text(f"{name.strip('.')} {{\n}}\n")
    keys = [block.keys[0].text for block in parse_text("import *.server", directory=tmp_path).blocks]
    assert keys == ["hidden.server", "a.server", "b.server"]


@pytest.mark.parametrize("text,message", [
    ("import missing.conf", "Corefile:1 - Error during parsing: File to import not found: missing.conf"),
    ("import a/*/*.conf", "Corefile:1 - Error during parsing: Glob pattern may only contain one wildcard (*), "
                          "but has others: {dir}/a/*/*.conf"),
    ("import a??.conf", "Corefile:1 - Error during parsing: Glob pattern may only contain one wildcard (*), "
                        "but has others: {dir}/a??.conf"),
    ("import [ab].conf", "Corefile:1 - Error during parsing: Glob pattern may only contain one wildcard (*), "
                         "but has others: {dir}/[ab].conf"),
    ("\nimport x[.conf", "Corefile:2 - Error during parsing: Failed to use import pattern x[.conf: syntax error in "
                         "pattern"),
    ("import sub", "Corefile:1 - Error during parsing: Could not import {dir}/sub: is a directory"),
    ("import *.server", "Corefile:1 - Error during parsing: Could not import {dir}/dir.server: is a directory"),
])
def test_import_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "dir.server").mkdir()
    assert error(text, directory=tmp_path) == message.format(dir=tmp_path)


@pytest.mark.timeout(60)
def test_files_importing_each_other_stop_at_the_cap(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("import b.conf\n")
    (tmp_path / "b.conf").write_text("import a.conf\n")
    assert error("import a.conf", directory=tmp_path) == (
        f"{tmp_path}/b.conf:1 - Error during parsing: maximum file import depth ({MAX_IMPORT_EXPANSIONS}) exceeded")


def test_a_snippet_defined_in_the_main_file_serves_an_imported_one(tmp_path: Path) -> None:
    (tmp_path / "zone.server").write_text("example.org {\n    import common\n}\n")
    syntax = parse_text("(common) {\n  cache 30\n}\nimport zone.server", directory=tmp_path)
    assert [shape(d) for d in syntax.blocks[0].directives] == [("cache", ("30",), None)]


# The configuration digest (reload plugin, caddy.ConfigDigest)

def test_the_digest_is_coredns_s_for_kubeadm_s_corefile() -> None:
    """CoreDNS 1.10 and 1.11 log `Running configuration SHA512 = 591cf328...` for this ConfigMap."""
    assert parse_corefile(CORE_FILES / "kubeadm-before-cache-disable.Corefile").sha512 == (
        "591cf328cccc12bc490481273e738df59329c62c0b729d94e8b61db9961c2fa5f046dd37f1cf888b953814040d180f52594972691cd6"
        "ff41be96639138a43908")


def test_the_digest_follows_the_parsed_configuration(tmp_path: Path) -> None:
    (tmp_path / "extra.conf").write_text("whoami")
    base = parse_text(". {\n    log\n    import extra.conf\n}\n", directory=tmp_path).sha512
    reformatted = parse_text(". {\n    log  # the query log\n\timport   extra.conf\n}\n\n\n", directory=tmp_path)
    assert reformatted.sha512 == base  # comments and spacing within a line are no configuration
    assert parse_text(". {\n\n    log\n    import extra.conf\n}\n", directory=tmp_path).sha512 != base  # lines are
    (tmp_path / "extra.conf").write_text("whoami\nlog")
    assert parse_text(". {\n    log\n    import extra.conf\n}\n", directory=tmp_path).sha512 != base  # imports are


def test_the_digest_is_of_go_s_json() -> None:
    """encoding/json: struct fields in order, map keys sorted, `<`, `>` and `&` escaped.  As in caddy, the
    main file's tokens have no file name, keys are substituted, a directive's own token is not."""
    document = ('[{"Keys":["example.org"],"Tokens":{"log":[{"File":"","Line":3,"Text":"log"},'
                '{"File":"","Line":3,"Text":"\\u003ca\\u0026b\\u003e"}],'
                '"whoami":[{"File":"","Line":2,"Text":"{$W}"}]}}]')
    syntax = parse_text('{$Z} {\n {$W}\n log "<a&b>"\n}', env={"Z": "example.org", "W": "whoami"})
    assert syntax.sha512 == hashlib.sha512(document.encode()).hexdigest()


# Keys (core/dnsserver/register.go, plugin.SplitHostPort)

LABEL = "a" * 63
ADDRESSES = [
    (".", Address("dns", ("",), None)),
    (".:53", Address("dns", ("",), 53)),
    ("dns://.:5353", Address("dns", ("",), 5353)),
    ("tls://.", Address("tls", ("",), None)),
    ("tls://example.org:8853", Address("tls", ("example.org",), 8853)),
    ("quic://.", Address("quic", ("",), None)),
    ("grpc://.", Address("grpc", ("",), None)),
    ("https://.", Address("https", ("",), None)),
    ("https3://.", Address("https3", ("",), None)),
    ("Example.ORG.", Address("dns", ("example.org",), None)),
    (LABEL + ".org", Address("dns", (LABEL + ".org",), None)),
    ("cluster.local:053", Address("dns", ("cluster.local",), 53)),
    ("10.0.0.0/8", Address("dns", ("10.in-addr.arpa",), None)),
    ("10.0.0.0/24:53", Address("dns", ("0.0.10.in-addr.arpa",), 53)),
    ("10.0.0.5/24", Address("dns", ("0.0.10.in-addr.arpa",), None)),
    ("10.0.0.0/15", Address("dns", ("0.10.in-addr.arpa", "1.10.in-addr.arpa"), None)),
    ("0.0.0.0/0", Address("dns", ("in-addr.arpa",), None)),
    ("2001:db8::/32", Address("dns", ("8.b.d.0.1.0.0.2.ip6.arpa",), None)),
    ("2001:db8::/30:53", Address("dns", tuple(f"{n}.b.d.0.1.0.0.2.ip6.arpa" for n in "89ab"), 53)),
    ("[::1]:53", Address("dns", ("[::1]",), 53)),  # CoreDNS has no brackets: this is a (useless) zone
    ("example.org:abc", Address("dns", ("example.org:abc",), None)),  # not a number, so part of the zone
]


@pytest.mark.parametrize("text,expected", ADDRESSES, ids=[case[0] for case in ADDRESSES])
def test_addresses(text: str, expected: Address) -> None:
    assert parse_address(key(text)) == expected


def test_a_cidr_expands_to_every_subnet_on_the_boundary() -> None:
    assert parse_address(key("10.0.0.0/17")).zones == tuple(f"{n}.0.10.in-addr.arpa" for n in range(128))
    assert parse_address(key("10.0.0.0/27:53")).zones == tuple(f"{n}.0.0.10.in-addr.arpa" for n in range(32))


ADDRESS_ERRORS = [
    ("example.org:", 'error inspecting server blocks: expecting data after last colon: "example.org:"'),
    ("dns://", 'error inspecting server blocks: expecting data after last colon: ""'),
    ("a\tb:", 'error inspecting server blocks: expecting data after last colon: "a\\tb:"'),
    (":53", "error inspecting server blocks: zone is not a valid domain name: "),
    ("a..b", "error inspecting server blocks: zone is not a valid domain name: a..b"),
    (".example.org", "error inspecting server blocks: zone is not a valid domain name: .example.org"),
    ("a" * 64 + ".org", f"error inspecting server blocks: zone is not a valid domain name: {'a' * 64}.org"),
    ("a" * 256, "error inspecting server blocks: specified zone is too long: 256 > 255"),
    (".".join([LABEL] * 4), "error inspecting server blocks: specified zone is too long: 256 > 255"),
    ("::fFFF:B:F/115", "error inspecting server blocks: invalid CIDR ::fFFF:B:F/115"),
    ("0::/0", "error inspecting server blocks: invalid CIDR 0::/0"),
    ("unix:///run/dns.sock", "unix:// cannot serve a server block: unix:///run/dns.sock"),
    ("example.org:70000", "invalid port 70000 in example.org:70000"),
]


@pytest.mark.parametrize("text,message", ADDRESS_ERRORS, ids=[case[0][:20] for case in ADDRESS_ERRORS])
def test_address_errors(text: str, message: str) -> None:
    with pytest.raises(CorefileError) as raised:
        parse_address(key(text))
    assert str(raised.value) == f"Corefile:7 - {message}"


NORMALIZED = [
    ("cluster.local", ("cluster.local",)),
    ("Cluster.Local.", ("cluster.local",)),
    (".", ("",)),
    ("dns://example.org:53", ("example.org",)),
    ("in-addr.arpa", ("in-addr.arpa",)),
    ("10.0.0.0/15", ("0.10.in-addr.arpa", "1.10.in-addr.arpa")),
]


@pytest.mark.parametrize("text,expected", NORMALIZED, ids=[case[0] for case in NORMALIZED])
def test_normalize_zones(text: str, expected: tuple[str, ...]) -> None:
    assert normalize_zones(key(text)) == expected


def test_normalize_zones_names_what_coredns_would_skip() -> None:
    with pytest.raises(CorefileError) as raised:
        normalize_zones(key("cluster..local"))
    assert str(raised.value) == "Corefile:7 - zone is not a valid domain name: cluster..local"


def test_reverse_zones_refuses_what_is_no_cidr() -> None:
    for text in ("10.0.0.0", "10.0.0.0/33", "10.0.0.0/+8", "010.0.0.0/8", "fe80::1%eth0/64", "example.org"):
        with pytest.raises(ValueError):
            reverse_zones(text)


Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def zone_network(zone: str) -> Network:
    """The prefix a reverse zone names: `1.10.in-addr.arpa` -> 10.1.0.0/16."""
    labels = zone.split(".")[:-2][::-1]
    if zone.endswith("in-addr.arpa"):
        return ipaddress.ip_network(f"{'.'.join(labels + ['0'] * (4 - len(labels)))}/{8 * len(labels)}")
    digits = "".join(labels).ljust(32, "0")
    return ipaddress.ip_network(f"{':'.join(digits[i:i + 4] for i in range(0, 32, 4))}/{4 * len(labels)}")


@given(st.one_of(st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                           st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address), st.integers(0, 32)),
                 st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                           st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address), st.integers(0, 128))))
def test_reverse_zones_cover_exactly_the_prefix(network: Network) -> None:
    subnets = [zone_network(zone) for zone in reverse_zones(str(network))]
    step = 8 if network.version == 4 else 4
    assert all(subnet.prefixlen % step == 0 and subnet.prefixlen - network.prefixlen < step for subnet in subnets)
    firsts = [int(subnet.network_address) for subnet in subnets]
    lasts = [int(subnet.broadcast_address) for subnet in subnets]
    assert (firsts[0], lasts[-1]) == (int(network.network_address), int(network.broadcast_address))
    assert all(last + 1 == first for last, first in zip(lasts, firsts[1:]))  # in order, no gap, no overlap


# Real-world Corefiles (tests/data/corefiles/README.md)

KUBEADM_TAIL = [("prometheus", (":9153",), None),
                ("forward", (".", "/etc/resolv.conf"), (("max_concurrent", ("1000",), None),))]
KUBERNETES = ("kubernetes", ("cluster.local", "in-addr.arpa", "ip6.arpa"),
              (("pods", ("insecure",), None), ("fallthrough", ("in-addr.arpa", "ip6.arpa"), None),
               ("ttl", ("30",), None)))


def names(path: Path) -> list[tuple[tuple[str, ...], list[str]]]:
    return [(tuple(k.text for k in b.keys), [d.name.text for d in b.directives]) for b in parse_corefile(path).blocks]


def test_kubeadm() -> None:
    directives = [shape(d) for d in parse_corefile(CORE_FILES / "kubeadm.Corefile").blocks[0].directives]
    assert directives == [("errors", (), None), ("health", (), (("lameduck", ("5s",), None),)), ("ready", (), None),
                          KUBERNETES, *KUBEADM_TAIL,
                          ("cache", ("30",), (("disable", ("success", "cluster.local"), None),
                                              ("disable", ("denial", "cluster.local"), None))),
                          ("loop", (), None), ("reload", (), None), ("loadbalance", (), None)]


def test_minikube() -> None:
    directives = [shape(d) for d in parse_corefile(CORE_FILES / "minikube.Corefile").blocks[0].directives]
    assert [d[0] for d in directives] == ["log", "errors", "health", "ready", "kubernetes", "prometheus", "hosts",
                                          "forward", "cache", "loop", "reload", "loadbalance"]
    assert directives[6] == ("hosts", (), (("192.168.49.1", ("host.minikube.internal",), None),
                                           ("fallthrough", (), None)))


def test_k3s(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dns_server.config.corefile"):
        assert names(CORE_FILES / "k3s.Corefile") == [((".:53",), [
            "errors", "health", "ready", "kubernetes", "hosts", "prometheus", "forward", "cache", "loop", "reload",
            "loadbalance"])]
    assert [r.getMessage() for r in caplog.records] == [
        "No files matching import glob pattern: /etc/coredns/custom/*.override",
        "No files matching import glob pattern: /etc/coredns/custom/*.server"]


def test_nodelocal_dns_cache() -> None:
    syntax = parse_corefile(CORE_FILES / "nodelocaldns.Corefile")
    assert [tuple(k.text for k in b.keys) for b in syntax.blocks] == [
        ("cluster.local:53",), ("in-addr.arpa:53",), ("ip6.arpa:53",), (".:53",)]
    first = [shape(d) for d in syntax.blocks[0].directives]
    assert first[1] == ("cache", (), (("success", ("9984", "30"), None), ("denial", ("9984", "5"), None)))
    assert first[4:] == [("bind", ("169.254.20.10", "10.96.0.10"), None),
                         ("forward", (".", "10.96.143.7"), (("force_tcp", (), None),)),
                         ("prometheus", (":9253",), None), ("health", ("169.254.20.10:8080",), None)]
    assert [parse_address(b.keys[0]) for b in syntax.blocks] == [
        Address("dns", ("cluster.local",), 53), Address("dns", ("in-addr.arpa",), 53),
        Address("dns", ("ip6.arpa",), 53), Address("dns", ("",), 53)]


def test_aks_with_its_custom_files() -> None:
    corefile = CORE_FILES / "aks" / "Corefile"
    syntax = parse_corefile(corefile)
    assert names(corefile) == [
        ((".:53",), ["errors", "ready", "health", "kubernetes", "prometheus", "forward", "cache", "loop", "reload",
                     "loadbalance", "log"]),
        (("puglife.local:53",), ["errors", "cache", "forward"]),
        (("contoso.com:53",), ["log", "errors", "rewrite", "forward"])]
    assert syntax.files == (corefile, corefile.parent / "custom" / "log.override",
                            corefile.parent / "custom" / "puglife.server", corefile.parent / "custom" / "test.server")
    assert [a.text for a in syntax.blocks[1].directives[2].args] == [".", "192.11.0.1"]
    rewrite, forward = syntax.blocks[2].directives[2:]
    assert shape(rewrite) == ("rewrite", ("stop",), (
        ("name", ("regex", r"(.*)\.contoso\.com", "{1}.default.svc.cluster.local"), None),
        ("answer", ("name", r"(.*)\.default\.svc\.cluster\.local", "{1}.contoso.com"), None)))
    assert shape(forward) == ("forward", (".", "/etc/resolv.conf"), None)  # the page's comment is no argument


def test_gardener(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dns_server.config.corefile"):
        syntax = parse_corefile(CORE_FILES / "gardener" / "Corefile")
    assert [(tuple(k.text for k in b.keys), [d.name.text for d in b.directives]) for b in syntax.blocks] == [
        ((".:8053",), ["health", "ready", "rewrite", "rewrite", "kubernetes", "prometheus", "loop", "errors", "log",
                       "forward", "cache", "reload", "loadbalance"])]
    first = shape(syntax.blocks[0].directives[2])
    assert first == ("rewrite", ("stop",), (
        ("name", ("regex", r"(^(?:[^\.]+\.)+)svc\.cluster\.local\.svc\.cluster\.local", "{1}svc.cluster.local"), None),
        ("answer", ("name", r"(^(?:[^\.]+\.)+)svc\.cluster\.local", "{1}svc.cluster.local.svc.cluster.local"), None),
        ("answer", ("value", r"(^(?:[^\.]+\.)+)svc\.cluster\.local", "{1}svc.cluster.local.svc.cluster.local"),
         None)))
    assert [r.getMessage() for r in caplog.records] == [
        "No files matching import glob pattern: custom/*.override",
        "No files matching import glob pattern: custom/*.server"]


def test_openshift() -> None:
    assert names(CORE_FILES / "openshift" / "Corefile") == [
        (("foo.com:5353",), ["prometheus", "forward", "errors", "log", "bufsize", "cache"]),
        (("bar.com:5353",), ["prometheus", "forward", "errors", "log", "bufsize", "cache"]),
        ((".:5353",), ["bufsize", "errors", "log", "health", "ready", "kubernetes", "prometheus", "forward", "cache",
                       "reload"]),
        (("hostname.bind:5353",), ["chaos"])]
    foo, bar = (parse_corefile(CORE_FILES / "openshift" / "Corefile").blocks[i].directives[1] for i in (0, 1))
    assert shape(foo) == ("forward", (".", "tls://1.1.1.1", "tls://2.2.2.2:5353"), (
        ("tls_servername", ("dns.foo.com",), None), ("tls", (), None), ("policy", ("round_robin",), None)))
    assert shape(bar) == ("forward", (".", "tls://1.1.1.1", "tls://2.2.2.2:5353"), (
        ("tls_servername", ("dns.bar.com",), None), ("tls", ("/etc/pki/dns.bar.com-ca-cacerts-2/ca-bundle.crt",), None),
        ("policy", ("round_robin",), None)))
