"""A parser for Apache httpd's configuration syntax that keeps where every argument sits in its file.

Lines hold one directive (`Name arg "quoted arg"`), a trailing backslash continues a line, `#` starts a
comment line, `<Section args>` ... `</Section>` nest. Each argument remembers its character span, so
`rewrite_args` changes one value and leaves comments, blanks and indentation alone. `load_tree` follows
`Include`/`IncludeOptional` (files, directories, globs) relative to the ServerRoot through a reader, so it
works over SSH. `Define`d variables (`${NAME}`) are substituted in the values it returns.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from certfleet.servers.paths import posix_view

MAX_INCLUDE_DEPTH = 16
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class ApacheSyntaxError(ValueError):
    """The file does not parse; the message names the file and line."""


@dataclass
class Arg:
    value: str
    start: int
    end: int


@dataclass
class Directive:
    name: str  # as written; compare with .key
    args: list[Arg]
    file: str
    line: int
    block: list[Directive] | None = None  # for <Section>

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def values(self) -> list[str]:
        return [a.value for a in self.args]

    def children(self, name: str) -> Iterator[Directive]:
        return (d for d in self.block or [] if d.key == name.lower())

    def first(self, name: str) -> Directive | None:
        return next(self.children(name), None)


def _args(text: str, start: int, end: int) -> list[Arg]:
    args: list[Arg] = []
    i = start
    while i < end:
        ch = text[i]
        if ch == "\\" and i + 1 < end and text[i + 1] == "\n":
            i += 2
        elif ch.isspace():
            i += 1
        elif ch in "\"'":
            j, out = i + 1, []
            while j < end and text[j] != ch:
                if text[j] == "\\" and j + 1 < end and text[j + 1] == ch:
                    j += 1
                out.append(text[j])
                j += 1
            args.append(Arg("".join(out), i, min(j + 1, end)))
            i = j + 1
        else:
            j = i
            while j < end and not text[j].isspace():
                j += 1
            args.append(Arg(text[i:j], i, j))
            i = j
    return args


def _logical_lines(text: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, line number) of each logical line, continuations joined."""
    i, n, line = 0, len(text), 1
    while i < n:
        start, first_line = i, line
        while True:
            j = text.find("\n", i)
            j = n if j == -1 else j
            if j > start and text[j - 1] == "\\" and j < n:
                i, line = j + 1, line + 1
                continue
            yield start, j, first_line
            i, line = j + 1, line + 1
            break


_BLANK = " \t\r\f\v"  # httpd's (ASCII) blanks; a non-breaking space is part of a word


def parse(text: str, filename: str = "httpd.conf") -> list[Directive]:
    root: list[Directive] = []
    stack: list[tuple[str, list[Directive]]] = [("", root)]
    for start, end, line in _logical_lines(text):
        lead = start
        while lead < end and text[lead] in _BLANK:
            lead += 1
        if lead >= end or text[lead] == "#":
            continue
        stop = end
        while stop > lead and text[stop - 1] in _BLANK:
            stop -= 1
        if text[lead] == "<":
            if text[stop - 1] != ">":
                raise ApacheSyntaxError(f"{filename}:{line}: section tag is not closed with '>'")
            if text[lead + 1] == "/":
                name = text[lead + 2 : stop - 1].strip()
                if len(stack) == 1 or stack[-1][0].lower() != name.lower():
                    expected = stack[-1][0] or "no open section"
                    raise ApacheSyntaxError(f"{filename}:{line}: </{name}> closes {expected}")
                stack.pop()
                continue
            m = re.match(r"<([^\s>]+)", text[lead:stop], re.ASCII)
            if m is None:  # `<>` or `< x>` (found by tests/fuzz)
                raise ApacheSyntaxError(f"{filename}:{line}: a section tag needs a name right after '<'")
            name = m.group(1)
            block: list[Directive] = []
            stack[-1][1].append(Directive(name, _args(text, lead + 1 + len(name), stop - 1), filename, line, block))
            stack.append((name, block))
            continue
        m = re.match(r"\S+", text[lead:stop], re.ASCII)  # httpd splits on ASCII blanks only
        assert m is not None  # text[lead] is not blank
        name = m.group(0)
        stack[-1][1].append(Directive(name, _args(text, lead + len(name), stop), filename, line))
    if len(stack) != 1:
        raise ApacheSyntaxError(f"{filename}: <{stack[-1][0]}> is never closed")
    return root


Reader = Callable[[str], "bytes | None"]
Lister = Callable[[str], list[str]]
IsDir = Callable[[str], bool]


@dataclass
class Tree:
    directives: list[Directive]
    server_root: str
    files: dict[str, str] = field(default_factory=dict)
    defines: dict[str, str] = field(default_factory=dict)

    def expand(self, value: str) -> str:
        return _VAR.sub(lambda m: self.defines.get(m.group(1), m.group(0)), value)


def load_tree(main: str, server_root: str, read: Reader, list_dir: Lister, is_dir: IsDir) -> Tree:
    """Parse `main` and what it includes; `ServerRoot` in the file overrides the given root."""
    tree = Tree([], server_root)

    def load(path: str, depth: int, optional: bool) -> list[Directive]:
        if depth > MAX_INCLUDE_DEPTH:
            raise ApacheSyntaxError(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
        data = read(path)
        if data is None:
            if optional:
                return []
            raise ApacheSyntaxError(f"{path} does not exist")
        text = data.decode("utf-8", "replace")
        tree.files[path] = text
        return splice(parse(text, path), depth)

    def splice(directives: list[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.key == "serverroot" and d.args:
                tree.server_root = posix_view(tree.expand(d.args[0].value))
            elif d.key == "define" and d.args:
                tree.defines[d.args[0].value] = tree.expand(d.args[1].value) if len(d.args) > 1 else ""
            if d.key in ("include", "includeoptional") and d.block is None and d.args:
                optional = d.key == "includeoptional"
                for path in expand(tree.expand(d.args[0].value), d, optional):
                    out.extend(load(path, depth + 1, optional))
                continue
            if d.block is not None:
                d.block = splice(d.block, depth)
            out.append(d)
        return out

    def expand(pattern: str, where: Directive, optional: bool) -> list[str]:
        pattern = posix_view(pattern)  # `Include C:/Apache24/conf/extra/*.conf` on Windows
        full = posixpath.normpath(pattern if posixpath.isabs(pattern) else posixpath.join(tree.server_root, pattern))
        if not any(c in full for c in "*?["):
            if is_dir(full):
                return [posixpath.join(full, n) for n in sorted(list_dir(full))]
            return [full]
        directory, name = posixpath.split(full)
        if any(c in directory for c in "*?["):
            raise ApacheSyntaxError(f"{where.file}:{where.line}: wildcards in directory names are not supported")
        matches = [posixpath.join(directory, n) for n in sorted(list_dir(directory)) if fnmatch.fnmatchcase(n, name)]
        if not matches and not optional and not any(c in name for c in "*?["):
            raise ApacheSyntaxError(f"{where.file}:{where.line}: {full} matches nothing")
        return matches

    tree.directives = load(main, 0, False)
    return tree


def vhost_ports(args: list[str]) -> list[int | None]:
    """Ports of `<VirtualHost *:443 [::1]:8443 _default_:443 host>`; None for an address without port."""
    ports: list[int | None] = []
    for a in args:
        if a.startswith("[") and "]:" in a:
            p = a.rsplit("]:", 1)[1]
        elif ":" in a and not a.startswith("["):
            p = a.rsplit(":", 1)[1]
        else:
            ports.append(None)
            continue
        ports.append(None if p == "*" else int(p) if p.isdigit() else None)
    return ports


def name_matches(pattern: str, name: str) -> bool:
    """ServerName/ServerAlias matching (aliases may use * and ? wildcards), case-insensitive."""
    pattern = pattern.split("://")[-1].split(":")[0].lower()
    return fnmatch.fnmatchcase(name.lower(), pattern)


def quote(value: str) -> str:
    """A value as httpd reads it back: bare when safe, else double-quoted with `\\"` for quotes.

    httpd has no way to write a line break, or a backslash right before the closing quote (`\\"` is a
    quote), so such values are refused rather than written as something else (found by tests/fuzz).
    """
    if "\n" in value or value.endswith("\\"):
        raise ApacheSyntaxError(
            f"{value!r} cannot be written in an Apache configuration (a line break or a final '\\')"
        )
    if value and not re.search(r"[\s\"'#\\]", value):
        return value
    return '"' + value.replace('"', '\\"') + '"'


def rewrite_args(text: str, edits: list[tuple[Arg, str]]) -> str:
    for arg, value in sorted(edits, key=lambda e: e[0].start, reverse=True):
        text = text[: arg.start] + quote(value) + text[arg.end :]
    return text
