"""A parser for nginx's configuration syntax that keeps where every argument sits in its file.

`parse(text)` tokenises like nginx's own `ngx_conf_read_token` (words, single/double quotes with
backslash escapes, `#` comments, `;`, `{`, `}`) into a tree of `Directive`s; each argument remembers its
byte span, so `rewrite_args` can change one value and leave every comment, blank and indent alone.
`load_tree` follows `include` directives (globs included) through a file reader, so it works over SSH.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

MAX_INCLUDE_DEPTH = 16


class NginxSyntaxError(ValueError):
    """The file does not parse; the message names the file and line."""


@dataclass
class Arg:
    value: str
    start: int  # byte span of the token in its file, quotes included
    end: int


@dataclass
class Directive:
    name: str
    args: list[Arg]
    file: str
    line: int
    block: list[Directive] | None = None  # children of `name args { ... }`

    @property
    def values(self) -> list[str]:
        return [a.value for a in self.args]

    def children(self, name: str) -> Iterator[Directive]:
        return (d for d in self.block or [] if d.name == name)

    def first(self, name: str) -> Directive | None:
        return next(self.children(name), None)


@dataclass
class _Token:
    text: str
    start: int
    end: int
    line: int
    quoted: bool = False


_SPECIAL = {";", "{", "}"}


def _tokens(text: str, filename: str) -> Iterator[_Token]:
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in _SPECIAL:
            yield _Token(ch, i, i + 1, line)
            i += 1
        elif ch in "\"'":
            start, start_line, out = i, line, []
            i += 1
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in "\"'\\":
                    i += 1
                if text[i] == "\n":
                    line += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise NginxSyntaxError(f"{filename}:{start_line}: unterminated quoted string")
            i += 1
            yield _Token("".join(out), start, i, start_line, quoted=True)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                i += 1
            yield _Token(text[start:i], start, i, line)


def parse(text: str, filename: str = "nginx.conf") -> list[Directive]:
    """The directives of one file (includes are not followed here)."""
    root: list[Directive] = []
    stack: list[list[Directive]] = [root]
    words: list[_Token] = []
    for tok in _tokens(text, filename):
        if not tok.quoted and tok.text in _SPECIAL:
            if tok.text == "}":
                if words:
                    raise NginxSyntaxError(f"{filename}:{tok.line}: missing ';' before '}}'")
                if len(stack) == 1:
                    raise NginxSyntaxError(f"{filename}:{tok.line}: unexpected '}}'")
                stack.pop()
                continue
            if not words:
                raise NginxSyntaxError(f"{filename}:{tok.line}: unexpected '{tok.text}'")
            head, *rest = words
            directive = Directive(head.text, [Arg(t.text, t.start, t.end) for t in rest], filename, head.line)
            stack[-1].append(directive)
            words = []
            if tok.text == "{":
                directive.block = []
                stack.append(directive.block)
        else:
            words.append(tok)
    if words:
        raise NginxSyntaxError(f"{filename}:{words[0].line}: directive {words[0].text!r} is not terminated by ';'")
    if len(stack) != 1:
        raise NginxSyntaxError(f"{filename}: unexpected end of file, expecting '}}'")
    return root


Reader = Callable[[str], "bytes | None"]
Lister = Callable[[str], list[str]]


@dataclass
class Tree:
    """The parsed configuration with includes spliced in, and every file that was read."""

    directives: list[Directive]
    files: dict[str, str] = field(default_factory=dict)


def load_tree(main: str, read: Reader, list_dir: Lister) -> Tree:
    """Parse `main` and every file it includes (relative includes resolve against main's directory)."""
    prefix = posixpath.dirname(main)
    tree = Tree([])

    def load(path: str, depth: int) -> list[Directive]:
        if depth > MAX_INCLUDE_DEPTH:
            raise NginxSyntaxError(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
        data = read(path)
        if data is None:
            raise NginxSyntaxError(f"{path} does not exist")
        text = data.decode("utf-8", "replace")
        tree.files[path] = text
        return splice(parse(text, path), depth)

    def splice(directives: list[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.name == "include" and d.block is None and d.args:
                for path in expand(d.args[0].value, d):
                    out.extend(load(path, depth + 1))
                continue
            if d.block is not None:
                d.block = splice(d.block, depth)
            out.append(d)
        return out

    def expand(pattern: str, where: Directive) -> list[str]:
        full = posixpath.normpath(pattern if posixpath.isabs(pattern) else posixpath.join(prefix, pattern))
        if not any(c in full for c in "*?["):
            if read(full) is None:
                raise NginxSyntaxError(f"{where.file}:{where.line}: included file {full} does not exist")
            return [full]
        directory, name = posixpath.split(full)
        if any(c in directory for c in "*?["):
            raise NginxSyntaxError(f"{where.file}:{where.line}: wildcards in directory names are not supported")
        return [posixpath.join(directory, n) for n in sorted(list_dir(directory)) if fnmatch.fnmatchcase(n, name)]

    tree.directives = load(main, 0)
    return tree


def listen_port(value: str) -> int | None:
    """The port of a `listen` address: `443`, `*:443`, `127.0.0.1:8443`, `[::]:443`; 80 when absent."""
    if value.startswith("unix:"):
        return None
    if value.isdigit():
        return int(value)
    host_port = value.rsplit("]:", 1)[1] if value.startswith("[") and "]:" in value else value
    if value.startswith("[") and "]:" not in value:
        return 80
    if ":" in host_port:
        host_port = host_port.rsplit(":", 1)[1]
        return int(host_port) if host_port.isdigit() else None
    return int(host_port) if host_port.isdigit() else 80


def name_matches(pattern: str, name: str) -> bool:
    """nginx `server_name` matching: exact, `*.example.com`, `.example.com`, `www.example.*`, `~regex`."""
    name = name.lower()
    if pattern.startswith("~"):
        try:
            return re.search(pattern[1:], name) is not None
        except re.error:
            return False
    pattern = pattern.lower()
    if pattern.startswith("."):
        return name == pattern[1:] or name.endswith(pattern)
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def quote(value: str) -> str:
    """A value as nginx reads it back: bare when safe, else double-quoted with escapes."""
    if value and not re.search(r"[\s;{}#\"'\\$]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewrite_args(text: str, edits: list[tuple[Arg, str]]) -> str:
    """Replace the given arguments' tokens with new values; everything else stays byte for byte."""
    for arg, value in sorted(edits, key=lambda e: e[0].start, reverse=True):
        text = text[: arg.start] + quote(value) + text[arg.end :]
    return text
