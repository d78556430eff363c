"""Edit an XML configuration file in place: lxml finds the elements, the text changes only where asked.

Serialising a tree with any XML library normalises what it does not model: line breaks between
attributes, quote styles, blank lines around the root, `<a></a>` vs `<a/>`. Administrators' server.xml,
standalone.xml and config.xml must come back exactly as they were except for what certfleet changed, so
`XmlEditor` parses the file with lxml for navigation, finds each element's start tag in the original
text, and splices edits into the text: attribute values replaced in their own quotes, new attributes
laid out like their neighbours, element text replaced, new elements inserted with their siblings'
indentation. The result is re-parsed before it is returned, so a broken edit can never be written.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from certfleet.connectors.errors import PermanentConnectorError

_SKIP = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.S)


def _written_name(element: etree._Element) -> str:
    local = etree.QName(element.tag).localname
    return f"{element.prefix}:{local}" if element.prefix else local


def _tag_end(text: str, pos: int) -> int:
    """Index just after the '>' closing the tag whose name ends at `pos` (quotes respected)."""
    quote = ""
    while pos < len(text):
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            return pos + 1
        pos += 1
    raise ValueError("unterminated tag")


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    lead = text[start:pos]
    return lead if not lead.strip() else re.match(r"\s*", lead).group(0)  # type: ignore[union-attr]


class XmlEditor:
    def __init__(self, where: str, path: str, data: bytes) -> None:
        self.where, self.path, self.data = where, path, data
        head = data.lstrip()[:200]
        match = re.search(rb"encoding=[\"']([A-Za-z0-9._-]+)[\"']", head) if head.startswith(b"<?xml") else None
        self.encoding = match.group(1).decode() if match else "utf-8"
        parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True)
        try:
            self.root: etree._Element = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            raise PermanentConnectorError(f"{where}: {path} is not well-formed XML: {exc}") from None
        self.text = data.decode(self.encoding)
        self._doc = self.root.getroottree()
        self._spans = self._start_tags()
        self._tags: dict[str, tuple[int, int, str]] = {}  # element path -> (start, end, new start-tag text)
        self._edits: list[tuple[int, int, str]] = []
        self.changed = False

    # -- locating --------------------------------------------------------------------------------------

    def _key(self, element: etree._Element) -> str:
        """lxml's Python proxies come and go (and with them id()); the element's path does not."""
        return str(self._doc.getpath(element))

    def _start_tags(self) -> dict[str, tuple[int, int]]:
        masked = _SKIP.sub(lambda m: " " * len(m.group(0)), self.text)
        spans: dict[str, tuple[int, int]] = {}
        by_name: dict[str, list[etree._Element]] = {}
        for element in self.root.iter():
            if isinstance(element.tag, str):
                by_name.setdefault(_written_name(element), []).append(element)
        for name, elements in by_name.items():
            found = [m.start() for m in re.finditer(r"<" + re.escape(name) + r"(?=[\s/>])", masked)]
            if len(found) != len(elements):
                raise PermanentConnectorError(f"{self.where}: cannot map <{name}> elements of {self.path} to its text")
            for element, start in zip(elements, found, strict=True):
                spans[self._key(element)] = (start, _tag_end(masked, start + 1 + len(name)))
        return spans

    def _tag(self, element: etree._Element) -> tuple[int, int, str]:
        key = self._key(element)
        if key not in self._tags:
            start, end = self._spans[key]
            self._tags[key] = (start, end, self.text[start:end])
        return self._tags[key]

    def _close_tag_start(self, element: etree._Element) -> int | None:
        """Where `</name>` of a non-empty element starts (None for `<name/>`)."""
        _, end = self._spans[self._key(element)]
        if self.text[end - 2 : end] == "/>":
            return None
        name = _written_name(element)
        masked = _SKIP.sub(lambda m: " " * len(m.group(0)), self.text)
        depth, pos = 1, end
        pattern = re.compile(r"<(/?)" + re.escape(name) + r"(?=[\s/>])")
        while True:
            m = pattern.search(masked, pos)
            if m is None:
                raise PermanentConnectorError(f"{self.where}: <{name}> in {self.path} is never closed")
            tag_end = _tag_end(masked, m.end())
            if m.group(1):
                depth -= 1
                if depth == 0:
                    return m.start()
            elif masked[tag_end - 2 : tag_end] != "/>":
                depth += 1
            pos = tag_end

    # -- editing ---------------------------------------------------------------------------------------

    def set_attributes(self, element: etree._Element, values: dict[str, str | None]) -> bool:
        """Set (None: remove) attributes in the element's own start tag; True when anything changed."""
        start, end, tag = self._tag(element)
        original = tag
        for name, value in values.items():
            attr = re.compile(r"(\s+)" + re.escape(name) + r"\s*=\s*(\"[^\"]*\"|'[^']*')")
            m = attr.search(tag)
            current = element.get(name)
            if value is None:
                if m:
                    tag = tag[: m.start()] + tag[m.end() :]
            elif m:
                if current != value:
                    q = m.group(2)[0]
                    escaped = escape(value, {'"': "&quot;"} if q == '"' else {"'": "&apos;"})
                    tag = tag[: m.start(2)] + q + escaped + q + tag[m.end(2) :]
            else:
                attrs = list(re.finditer(r"(\s+)[\w:.-]+\s*=\s*(\"[^\"]*\"|'[^']*')", tag))
                if attrs:
                    last = attrs[-1]
                    lead = last.group(1) if "\n" in last.group(1) else " "
                    tag = tag[: last.end()] + lead + f"{name}={quoteattr(value)}" + tag[last.end() :]
                else:
                    at = len("<" + _written_name(element))
                    tag = tag[:at] + f" {name}={quoteattr(value)}" + tag[at:]
        if tag != original:
            self._tags[self._key(element)] = (start, end, tag)
            self.changed = True
            return True
        return False

    def set_text(self, element: etree._Element, value: str) -> bool:
        """Replace the text content of a leaf element (`<a>old</a>`, `<a/>`)."""
        if (element.text or "").strip() == value and len(element) == 0:
            return False
        start, end = self._spans[self._key(element)]
        close = self._close_tag_start(element)
        if close is None:
            start_tag = self._tag(element)[2]
            self._tags[self._key(element)] = (start, end, start_tag[:-2].rstrip() + ">")
            self._edits.append((end, end, escape(value) + f"</{_written_name(element)}>"))
        else:
            self._edits.append((end, close, escape(value)))
        self.changed = True
        return True

    def insert_child(
        self,
        parent: etree._Element,
        index: int,
        local_name: str,
        attrs: dict[str, str] | None = None,
        text: str | None = None,
        children: list[tuple[str, dict[str, str]]] | None = None,
    ) -> None:
        """Insert a new element (optionally with text or empty children) as `parent[index]`."""
        prefix = f"{parent.prefix}:" if parent.prefix else ""
        kids = [c for c in parent if isinstance(c.tag, str)]
        parent_indent = _line_indent(self.text, self._spans[self._key(parent)][0])
        indent = _line_indent(self.text, self._spans[self._key(kids[0])][0]) if kids else parent_indent + "    "
        step = indent[len(parent_indent) :] if indent.startswith(parent_indent) else "    "
        element = _render(prefix, local_name, attrs or {}, text, children or [], indent, step)
        self.changed = True
        if index < len(kids):
            at = self._spans[self._key(kids[index])][0]
            self._edits.append((at, at, element + "\n" + indent))
            return
        close = self._close_tag_start(parent)
        if close is None:  # <parent/> becomes <parent>...</parent>
            start, end, tag = self._tag(parent)
            self._tags[self._key(parent)] = (start, end, tag[:-2].rstrip() + ">")
            name = _written_name(parent)
            self._edits.append((end, end, "\n" + indent + element + "\n" + parent_indent + f"</{name}>"))
            return
        line_start = self.text.rfind("\n", 0, close) + 1
        if not self.text[line_start:close].strip():
            self._edits.append((line_start, line_start, indent + element + "\n"))
        else:
            self._edits.append((close, close, "\n" + indent + element + "\n" + parent_indent))

    # -- result ----------------------------------------------------------------------------------------

    def result(self) -> bytes:
        edits = [*self._edits, *self._tags.values()]
        text = self.text
        # From the end backwards; insertions at one spot are applied last-first, so they read in call order.
        ordered = sorted(enumerate(edits), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
        for _, (start, end, new) in ordered:
            text = text[:start] + new + text[end:]
        data = text.encode(self.encoding)
        try:
            etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:  # a bug here must never reach a server
            raise PermanentConnectorError(f"{self.where}: editing {self.path} produced invalid XML: {exc}") from None
        return data


def _render(
    prefix: str,
    name: str,
    attrs: dict[str, str],
    text: str | None,
    children: list[tuple[str, dict[str, str]]],
    indent: str,
    step: str,
) -> str:
    attributes = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    if children:
        inner = "".join(
            "\n" + indent + step + f"<{prefix}{c}" + "".join(f" {k}={quoteattr(v)}" for k, v in a.items()) + "/>"
            for c, a in children
        )
        return f"<{prefix}{name}{attributes}>{inner}\n{indent}</{prefix}{name}>"
    if text is not None:
        return f"<{prefix}{name}{attributes}>{escape(text)}</{prefix}{name}>"
    return f"<{prefix}{name}{attributes}/>"
