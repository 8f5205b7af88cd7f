"""The Corefile language: text -> tokens -> server blocks of directives, each token with its location.

CoreDNS 1.14 reads its Corefile with the `caddyfile` package of coredns/caddy; operators replace
CoreDNS by changing only the image, so this module follows that parser rule for rule (and not a
reading of the documentation).  What a directive means is its plugin's business (`plugins/<name>.py`): any name
is accepted here.

Lexing (`lexer.go`)
  * Tokens are separated by Go's Unicode white space; `\\r` is dropped wherever it appears outside
    quotes; a leading byte order mark is dropped.
  * An unquoted `#` hides the rest of the word it appears in (`foo#bar baz` is `foo baz`); at the
    start of a word it hides the rest of the line.
  * A token is quoted only when `"` is its first character; it runs to the next unescaped `"`,
    across lines if need be.  `\\"` is the only escape, every other backslash stays.  `""` is an
    empty token; a `"` inside a word is an ordinary character.
  * Braces are structure only as whole tokens: `.:53{`, `{$PORT}`, `{>id}` are ordinary words.

Parsing (`parse.go`, `dispenser.go`)
  * A server block is its keys (all on its first line; a key ending in `,` continues on the next)
    and a `{` on that line or the next; without the `{`, the rest of the file is one block.  Ours: a
    file that ends with the `}` of the last directive's block, the server block's own `}` missing,
    is refused (`Unexpected EOF`); caddy takes that `}` for the server block's and runs it.
  * A block `(name) { ... }` whose only key is in parentheses defines a snippet; `import name`
    splices its tokens.  Redefining one, or a snippet importing itself, is an error.
  * A directive's arguments end at its line end.  A `{` on its line opens its block, which lasts to
    the matching `}` (braces counted as whole tokens) and holds lines `subdirective args...`,
    returned as nested `Directive`s.  A plugin reads a block only when it opens on the
    directive's line, so a `{` that starts a line is an error here, as are words after a block's
    `}` on its line.  A `}` ends the block even when it shares a line with a subdirective.
  * `import PATTERN` (one argument) is honoured at top level, as a directive, and at the start of a
    line inside a directive's block.  PATTERN is a snippet, or a file or glob relative to the
    importing file's directory: a glob may hold one `*` and one `?`, no `[...]`; a glob matching
    nothing logs a warning, a missing plain file is an error.  Snippet and file imports are each
    capped at `MAX_IMPORT_EXPANSIONS` per parse, which is what stops import cycles.
  * `{$NAME}` and `{%NAME%}` are replaced inside tokens (keys, directive names, arguments, import
    patterns) after lexing, so a value with spaces stays one token; an unset variable is empty,
    and a key that ends up empty is dropped.  `{$}` is left alone.

Keys and zone arguments are read by `syntax.py`, which the plugins' setups use without this module.

Errors are `CorefileError`s whose message is CoreDNS's, prefixed with `FILE:LINE - `.

`sha512` is what the reload plugin prints as "Running configuration SHA512" and compares to decide
whether to reload: the digest of the parsed server blocks as Go's encoding/json writes them
(`caddy.ConfigDigest`), so imported files count and comments and layout within a line do not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dns_server.config.syntax import (
    CorefileError,
    CorefileSyntax,
    Directive,
    ServerBlockSyntax,
    Token,
)

MAX_IMPORT_EXPANSIONS = 10_000  # coredns/caddy 1.1.3+: snippet imports, and file imports (a glob counts once)
MAX_ENV_EXPANSIONS = 1_000  # ours: CoreDNS never returns from a variable whose value names itself
GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                     "\u200a\u2028\u2029\u202f\u205f\u3000")  # Go's unicode.IsSpace
GLOB_META = "*?[\\"  # path/filepath hasMeta on Unix

_LOG = logging.getLogger(__name__)
_JSON_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def parse_corefile(path: Path, env: Mapping[str, str] = os.environ) -> CorefileSyntax:
    """Read and parse the Corefile at `path` and every file it imports."""
    try:
        data = path.read_bytes()
    except IsADirectoryError as error:
        raise CorefileError(_go_os_error("read", str(path), error)) from None
    except OSError as error:
        raise CorefileError(_go_os_error("open", str(path), error)) from None
    parser = _Parser(_lex(data.decode("utf-8", errors="replace"), ""), str(path),
                     os.path.dirname(os.path.abspath(path)), env)
    return parser.parse(main=path)


def parse_text(text: str, name: str = "Corefile", directory: Path = Path("."),
               env: Mapping[str, str] = os.environ) -> CorefileSyntax:
    """Parse Corefile text; `name` is what messages call it, `directory` what imports are relative to."""
    return _Parser(_lex(text, ""), name, os.path.abspath(directory), env).parse(main=None)


def tokenize(text: str, name: str = "Corefile") -> tuple[Token, ...]:
    """The lexer alone: the tokens as written, before environment substitution and imports."""
    return tuple(Token(lexeme.text, name, lexeme.line, lexeme.quoted) for lexeme in _lex(text, ""))


# Lexing

@dataclass(slots=True)
class _Lexeme:
    """A token as the parser moves it: caddy substitutes arguments' variables in place, so this is
    mutable and copied wherever caddy copies a token (snippets, imported files)."""

    text: str
    file: str  # "" in the main file (as caddy leaves it); an imported file's absolute path
    line: int
    quoted: bool

    def copy(self) -> _Lexeme:
        return _Lexeme(self.text, self.file, self.line, self.quoted)

    @property
    def last_line(self) -> int:
        """The line the token ends on: a quoted token may span lines."""
        return self.line + self.text.count("\n")


def _lex(text: str, file: str) -> list[_Lexeme]:
    """caddy's lexer: see the module docstring."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lexemes: list[_Lexeme] = []
    line, i, end = 1, 0, len(text)
    while i < end:
        word: list[str] = []
        start, quoted, escaped, comment, closed = line, False, False, False, False
        while i < end:
            ch = text[i]
            i += 1
            if quoted:
                if not escaped and ch == "\\":
                    escaped = True
                    continue
                if not escaped and ch == '"':
                    closed = True
                    break
                if ch == "\n":
                    line += 1
                if escaped and ch != '"':
                    word.append("\\")
                word.append(ch)
                escaped = False
                continue
            if ch in GO_SPACE:
                if ch == "\n":
                    line += 1
                    comment = False
                if word and ch != "\r":
                    break
                continue
            if ch == "#":
                comment = True
            if comment:
                continue
            if not word:
                start = line
                if ch == '"':
                    quoted = True
                    continue
            word.append(ch)
        if word or closed:
            lexemes.append(_Lexeme("".join(word), file, start, quoted))
    return lexemes


def _same_line(before: _Lexeme, after: _Lexeme) -> bool:
    """Dispenser.NextArg: `after` continues the line `before` ends on."""
    return before.file == after.file and before.last_line == after.line


# Parsing

@dataclass(slots=True)
class _Block:
    keys: list[Token]
    directives: list[tuple[str, list[_Lexeme]]]  # the name after substitution, the tokens as caddy keeps them


class _Parser:
    """caddy's parser over one token list, which imports splice into as they are met."""

    def __init__(self, lexemes: list[_Lexeme], name: str, directory: str, env: Mapping[str, str]) -> None:
        self.tokens = lexemes
        self.cursor = -1
        self.name = name  # what the main file is called in messages
        self.directory = directory  # what the main file's imports are relative to
        self.env = env
        self.snippets: dict[str, list[_Lexeme]] = {}
        self.snippet_expansions = 0
        self.file_expansions = 0
        self.at_eof = False
        self.imported: dict[str, list[_Lexeme]] = {}  # absolute path -> its tokens, in import order
        self.block = _Block([], [])

    def parse(self, main: Path | None) -> CorefileSyntax:
        blocks: list[_Block] = []
        while self._next():
            self.block = _Block([], [])
            self._begin()
            if self.block.keys:
                blocks.append(self.block)
        syntax = tuple(ServerBlockSyntax(tuple(block.keys), tuple(self._directive_tree(name, lexemes)
                                                                  for name, lexemes in block.directives),
                                         block.keys[0].location) for block in blocks)
        files = ((main,) if main is not None else ()) + tuple(Path(path) for path in self.imported)
        return CorefileSyntax(syntax, files, _config_digest(blocks))

    # the cursor (Dispenser)

    def _next(self) -> bool:
        if self.cursor < len(self.tokens) - 1:
            self.cursor += 1
            return True
        return False

    def _next_arg(self) -> bool:
        if 0 <= self.cursor < len(self.tokens) - 1 and _same_line(self.tokens[self.cursor],
                                                                   self.tokens[self.cursor + 1]):
            self.cursor += 1
            return True
        return False

    def _is_new_line(self) -> bool:
        if self.cursor < 1:
            return True
        if self.cursor >= len(self.tokens):
            return False
        before, current = self.tokens[self.cursor - 1], self.tokens[self.cursor]
        return before.file != current.file or before.last_line < current.line

    def _val(self) -> str:
        return self.tokens[self.cursor].text if 0 <= self.cursor < len(self.tokens) else ""

    def _where(self, lexeme: _Lexeme | None = None) -> str:
        if lexeme is None and 0 <= self.cursor < len(self.tokens):
            lexeme = self.tokens[self.cursor]
        return f"{lexeme.file or self.name}:{lexeme.line}" if lexeme is not None else f"{self.name}:0"

    def _error(self, message: str, lexeme: _Lexeme | None = None) -> CorefileError:
        return CorefileError(f"{self._where(lexeme)} - Error during parsing: {message}")

    def _syntax_error(self, expected: str) -> CorefileError:
        return CorefileError(f"{self._where()} - Syntax error: Unexpected token '{self._val()}', "
                             f"expecting '{expected}'")

    def _argument_error(self) -> CorefileError:
        if self._val() == "{":
            return self._error("Unexpected token '{', expecting argument")
        return self._error(f"Wrong argument count or unexpected line ending after '{self._val()}'")

    def _token(self, lexeme: _Lexeme, text: str | None = None) -> Token:
        return Token(lexeme.text if text is None else text, lexeme.file or self.name, lexeme.line, lexeme.quoted)

    # the grammar (parser)

    def _begin(self) -> None:
        self._addresses()
        if self.at_eof:  # a Corefile that ends with a line of keys
            return
        keys = self.block.keys
        if len(keys) == 1 and keys[0].text.startswith("(") and keys[0].text.endswith(")"):
            name = keys[0].text[1:].removesuffix(")")
            if name in self.snippets:
                raise self._error(f"redeclaration of previously declared snippet {name}")
            self.snippets[name] = self._snippet_body(name)
            self.block.keys = []
            return
        opened = self._val() == "{"
        if not opened:  # the single-server form: everything that follows is this block
            self.cursor -= 1
        if self._directives() or not opened:
            return
        if self._val() == "}":  # ours: caddy takes the `}` that closed the last directive's block for this one's
            raise self._error("Unexpected EOF")
        raise self._syntax_error("}")

    def _addresses(self) -> None:
        expecting_another = False
        while True:
            text = self._env(self._val())
            if text == "import" and self._is_new_line():
                self._import()
                continue
            if text == "{":
                if expecting_another:
                    raise self._error(f"Expected another address but had '{text}' - check for extra comma")
                return
            if text:  # an empty key is dropped: `""`, or a variable that is unset
                expecting_another = text.endswith(",")
                self.block.keys.append(self._token(self.tokens[self.cursor], text.removesuffix(",")))
            if not self._next():
                if expecting_another:
                    raise self._error("Unexpected EOF")
                self.at_eof = True
                return
            if not expecting_another and self._is_new_line():
                return

    def _snippet_body(self, name: str) -> list[_Lexeme]:
        if self._val() != "{":
            raise self._syntax_error("{")
        depth, body = 1, []
        while self._next():
            if self._val() == "}":
                depth -= 1
                if depth == 0:
                    break
            elif self._val() == "{":
                depth += 1
            body.append(self.tokens[self.cursor].copy())
        if depth:
            raise self._syntax_error("}")
        for before, lexeme, after in zip([None, *body], body, body[1:]):
            at_line_start = before is None or before.file != lexeme.file or before.line != lexeme.line
            if lexeme.text == "import" and at_line_start and self._env(after.text) == name:
                raise self._error(f"maximum snippet import depth ({MAX_IMPORT_EXPANSIONS}) exceeded")
        return body

    def _directives(self) -> bool:
        """The directives up to the `}` that closes the block (True) or to the end of the tokens (False)."""
        while self._next():
            if self._val() == "}":
                return True
            if self._val() == "import":
                self._import()
                self.cursor -= 1
                continue
            self._directive()
        return False

    def _directive(self) -> None:
        head = self.tokens[self.cursor]
        lexemes = [head.copy()]  # the name as written; caddy substitutes the arguments only
        nesting = 0
        while self._next():
            current = self.tokens[self.cursor]
            if current.text == "{":
                nesting += 1
            elif self._is_new_line() and nesting == 0:
                self.cursor -= 1
                break
            elif current.text == "}" and nesting > 0:
                nesting -= 1
            elif current.text == "}":
                raise self._error("Unexpected '}' because no matching opening brace")
            elif current.text == "import" and self._is_new_line():
                self._import()
                self.cursor -= 1
                continue
            current.text = self._env(current.text)
            lexemes.append(current.copy())
        if nesting:
            raise self._error("Unexpected EOF")
        self.block.directives.append((self._env(head.text), lexemes))

    def _import(self) -> None:
        """Replace `import PATTERN` by the snippet's or the files' tokens; the cursor ends on the token
        before the import, so the next `_next()` reads the first token imported."""
        if not self._next_arg():
            raise self._argument_error()
        pattern = self._env(self._val())
        if not pattern:
            raise self._error("Import requires a non-empty filepath")
        at = self.cursor
        if self._next_arg():
            raise self._error("Import takes only one argument (glob pattern or file)")
        if pattern in self.snippets:
            if self.snippet_expansions >= MAX_IMPORT_EXPANSIONS:
                raise self._error(f"maximum snippet import depth ({MAX_IMPORT_EXPANSIONS}) exceeded")
            self.snippet_expansions += 1
            spliced = [lexeme.copy() for lexeme in self.snippets[pattern]]
        else:
            if self.file_expansions >= MAX_IMPORT_EXPANSIONS:
                raise self._error(f"maximum file import depth ({MAX_IMPORT_EXPANSIONS}) exceeded")
            self.file_expansions += 1
            spliced = self._import_files(pattern)
        self.tokens[at - 1:at + 1] = spliced
        self.cursor = at - 1

    def _import_files(self, pattern: str) -> list[_Lexeme]:
        importing = self.tokens[self.cursor].file
        base = os.path.dirname(importing) if importing else self.directory
        glob_pattern = pattern if os.path.isabs(pattern) else _clean(os.path.join(base, pattern))
        if (glob_pattern.count("*") > 1 or glob_pattern.count("?") > 1
                or ("[" in glob_pattern and "]" in glob_pattern)):  # caddy: globs that expand without end
            raise self._error(f"Glob pattern may only contain one wildcard (*), but has others: {glob_pattern}")
        try:
            matches = _glob(glob_pattern)
        except _BadPattern:
            raise self._error(f"Failed to use import pattern {pattern}: syntax error in pattern") from None
        if not matches:
            if any(ch in glob_pattern for ch in "*?[]"):
                _LOG.warning("No files matching import glob pattern: %s", pattern)
            else:
                raise self._error(f"File to import not found: {pattern}")
        return [lexeme.copy() for match in matches for lexeme in self._read_import(match)]

    def _read_import(self, path: str) -> list[_Lexeme]:
        absolute = os.path.abspath(path)
        if absolute not in self.imported:
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except IsADirectoryError:
                raise self._error(f"Could not import {path}: is a directory") from None
            except OSError as error:
                raise self._error(f"Could not import {path}: {_go_os_error('open', path, error)}") from None
            self.imported[absolute] = _lex(data.decode("utf-8", errors="replace"), absolute)
        return self.imported[absolute]

    def _env(self, text: str) -> str:
        try:
            return _replace_env(text, self.env)
        except _EndlessExpansion:
            raise self._error(f"environment variables in '{text}' expand without end") from None

    # from caddy's tokens to directive trees

    def _directive_tree(self, name: str, lexemes: list[_Lexeme]) -> Directive:
        directive, end = self._line(lexemes, 0, name)
        if end < len(lexemes):
            raise self._stray(lexemes[end])
        return directive

    def _line(self, lexemes: list[_Lexeme], i: int, name: str | None = None) -> tuple[Directive, int]:
        """`name args... [{ lines }]` from `lexemes[i]`; returns it and the index after it."""
        head = lexemes[i]
        args: list[Token] = []
        before = head
        i += 1
        while i < len(lexemes) and _same_line(before, lexemes[i]) and lexemes[i].text != "}":
            if lexemes[i].text == "{":
                block, i = self._block(lexemes, i + 1)
                if i < len(lexemes) and lexemes[i].text != "}" and _same_line(lexemes[i - 1], lexemes[i]):
                    raise self._stray(lexemes[i])
                return Directive(self._token(head, name), tuple(args), block), i
            args.append(self._token(lexemes[i]))
            before = lexemes[i]
            i += 1
        return Directive(self._token(head, name), tuple(args), None), i

    def _block(self, lexemes: list[_Lexeme], i: int) -> tuple[tuple[Directive, ...], int]:
        """The lines of a block from just after its `{`; returns them and the index after its `}`."""
        lines: list[Directive] = []
        while i < len(lexemes) and lexemes[i].text != "}":
            if lexemes[i].text == "{":
                raise self._stray(lexemes[i])
            line, i = self._line(lexemes, i)
            lines.append(line)
        if i == len(lexemes):  # the parser has matched every brace; kept so a slip cannot become a traceback
            raise self._error("Unexpected EOF", lexemes[-1])
        return tuple(lines), i + 1

    def _stray(self, lexeme: _Lexeme) -> CorefileError:
        if lexeme.text == "{":
            return self._error("Unexpected '{' without a directive: a block opens at the end of its "
                               "directive's line", lexeme)
        return self._error(f"Unexpected '{lexeme.text}' after '}}': a block ends its line", lexeme)


class _EndlessExpansion(Exception):
    pass


def _replace_env(text: str, env: Mapping[str, str]) -> str:
    """caddy's replaceEnvVars: `{%NAME%}` first, then `{$NAME}`, each reference replaced everywhere
    and the search restarted, so a value may name further variables."""
    for start, end in (("{%", "%}"), ("{$", "}")):
        index = text.find(start)
        for _ in range(MAX_ENV_EXPANSIONS):
            if index == -1:
                break
            close = text.find(end, index)
            if close == -1:
                break
            if close <= index + len(start):  # `{$}`: caddy leaves this and everything after it
                break
            reference = text[index:close + len(end)]
            text = text.replace(reference, env.get(reference[len(start):-len(end)], ""))
            index = text.find(start)
        else:
            raise _EndlessExpansion(text)
    return text


def _config_digest(blocks: list[_Block]) -> str:
    """SHA512 of the server blocks as Go's encoding/json writes caddy's `[]ServerBlock`."""
    document = []
    for block in blocks:
        tokens: dict[str, list[dict[str, object]]] = {}
        for name, lexemes in block.directives:
            tokens.setdefault(name, []).extend(
                {"File": lexeme.file, "Line": lexeme.line, "Text": lexeme.text} for lexeme in lexemes)
        document.append({"Keys": [key.text for key in block.keys], "Tokens": tokens})
    # Go sorts map keys; the struct fields (Keys, Tokens; File, Line, Text) are in sorted order already
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for char, escape in _JSON_HTML_ESCAPES.items():
        text = text.replace(char, escape)
    return hashlib.sha512(text.encode()).hexdigest()


# Imports: Go's path/filepath.Glob

class _BadPattern(Exception):
    pass


def _glob(pattern: str) -> list[str]:
    """filepath.Glob: names sorted per directory, `*` matches a leading dot, errors ignored."""
    for part in pattern.split(os.sep):
        _part_regex(part)
    if not any(ch in pattern for ch in GLOB_META):
        return [pattern] if os.path.lexists(pattern) else []
    directory, name = os.path.split(pattern)
    directory = directory or "."
    if not any(ch in directory for ch in GLOB_META):
        return _glob_in(directory, name)
    return [match for found in _glob(directory) for match in _glob_in(found, name)]


def _glob_in(directory: str, pattern: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    regex = _part_regex(pattern)
    return [os.path.join(directory, name) for name in names if regex.fullmatch(name)]


def _part_regex(part: str) -> re.Pattern[str]:
    """filepath.Match for one path element; caddy has already refused `[...]` classes."""
    regex, i = [], 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            regex.append("[^/]*")
        elif ch == "?":
            regex.append("[^/]")
        elif ch == "[":
            raise _BadPattern(part)
        elif ch == "\\":
            i += 1
            if i == len(part):
                raise _BadPattern(part)
            regex.append(re.escape(part[i]))
        else:
            regex.append(re.escape(ch))
        i += 1
    return re.compile("".join(regex), re.DOTALL)


def _clean(path: str) -> str:
    """filepath.Clean, which keeps no double slash at the front."""
    cleaned = os.path.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _go_os_error(op: str, path: str, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


