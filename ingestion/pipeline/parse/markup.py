"""HTML, Markdown and plain text.

HTML is cleaned before partitioning: scripts, styles and page furniture (navigation, site header
and footer, sidebars) go; text a browser would not show (inline `display:none`, white or
zero-size text, the `hidden` attribute) is kept apart as hidden blocks, which ingestion flags
as a likely prompt injection. Plain text is split into paragraphs here (unstructured's text
partitioner classifies every line with spaCy: 100 s for a long novel).
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from lxml import html as lxml_html

from ingestion.pipeline.parse.elements import elements_to_blocks, run_partitioner
from ingestion.pipeline.parse.types import Block, one_line

_DROPPED_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "object", "embed")
_FURNITURE_TAGS = ("nav", "aside", "form")
_FURNITURE_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
_FURNITURE_CLASS = re.compile(
    r"(^|[\s_-])(nav|navbar|navigation|menu|breadcrumbs?|sidebar|site-footer|site-header|"
    r"skip-link|cookie|visually-hidden|element-invisible|sr-only|screen-reader-text)($|[\s_-])",
    re.IGNORECASE,
)
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])|"
    r"opacity\s*:\s*0(?![.\d]*[1-9])|(?<![-\w])color\s*:\s*(#fff\b|#ffffff\b|white\b)",
    re.IGNORECASE,
)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_PIPE_ROW = re.compile(r"^\|.*\|$")
_TITLE_MAX_WORDS = 10
_HIDDEN_MAX_SHARE = 0.3
_HIDDEN_MAX_CHARS = 1000


def html_blocks(text: str) -> list[Block]:
    """Blocks of an HTML page: visible content, then hidden text as flagged blocks."""
    return html_to_blocks(text, heading="")


def html_to_blocks(text: str, *, heading: str) -> list[Block]:
    from unstructured.partition.html import partition_html

    cleaned, hidden = clean_html(text)
    elements = run_partitioner("HTML", partition_html, text=cleaned, skip_headers_and_footers=True)
    blocks = elements_to_blocks(elements)
    if heading:
        blocks = [b if b.heading else Block(b.text, b.page, heading, b.kind) for b in blocks]
    blocks.extend(Block(h, None, heading, "text", hidden=True) for h in hidden)
    return blocks


def clean_html(text: str) -> tuple[str, list[str]]:
    """Return (HTML without scripts, furniture and hidden elements, the hidden texts)."""
    try:
        # Bytes, because lxml refuses str input that carries an XML encoding declaration.
        parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True)
        tree = lxml_html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return text, []
    for element in list(tree.iter(*_DROPPED_TAGS)):
        _drop(element)
    hidden: list[str] = []
    total = len(one_line(tree.text_content()))
    for element in list(tree.iter()):
        if not isinstance(element.tag, str) or element.getparent() is None:
            continue
        if _is_hidden(element):
            content = one_line(element.text_content())
            # A "hidden" wrapper around most of the page is broken markup (an unclosed hidden
            # div swallowing the rest), not a hidden message: leave it in place.
            if len(content) > max(_HIDDEN_MAX_CHARS, _HIDDEN_MAX_SHARE * total):
                continue
            if content:
                hidden.append(content)
            _drop(element)
        elif _is_furniture(element):
            _drop(element)
    return lxml_html.tostring(tree, encoding="unicode"), hidden


def html_title(text: str) -> str:
    try:
        parser = lxml_html.HTMLParser(encoding="utf-8")
        tree = lxml_html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return ""
    return (tree.findtext(".//title") or "").strip()


def _is_hidden(element: Any) -> bool:
    if element.tag in ("head", "title", "meta", "link"):
        return False
    return element.get("hidden") is not None or bool(_HIDDEN_STYLE.search(element.get("style", "")))


def _is_furniture(element: Any) -> bool:
    if element.tag in ("html", "body", "main", "article"):
        return False
    if element.tag in _FURNITURE_TAGS or element.get("role", "").lower() in _FURNITURE_ROLES:
        return True
    if element.tag in ("header", "footer") and element.getparent().tag == "body":
        return True
    return bool(_FURNITURE_CLASS.search(f"{element.get('class', '')} {element.get('id', '')}"))


def _drop(element: Any) -> None:
    parent = element.getparent()
    if parent is None:
        return
    # Keep the text that follows the element inside its parent.
    tail = element.tail
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def markdown_blocks(text: str) -> list[Block]:
    from unstructured.partition.md import partition_md

    return elements_to_blocks(run_partitioner("Markdown", partition_md, text=text))


def text_to_blocks(text: str, *, heading: str = "", titles: bool = True) -> list[Block]:
    """Paragraphs (split at blank lines, hard-wrapped lines joined); short standalone lines in
    capitals or title case become section titles when `titles` is set; two or more consecutive
    pipe rows ("| a | b |") stay a table, one row a line."""
    blocks: list[Block] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if not lines:
            continue
        if titles and len(lines) == 1 and _looks_like_title(lines[0]):
            heading = lines[0][:500]
            blocks.append(Block(heading, None, heading, "title"))
            continue
        for is_table, run in _table_runs(lines):
            if is_table:
                blocks.append(Block("\n".join(run), None, heading, "table"))
            else:
                blocks.append(Block(" ".join(run), None, heading, "text"))
    return blocks


def _table_runs(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Consecutive lines grouped into (is a table, lines): a table is two or more pipe rows.
    Joined into the paragraph, a table's rows would read as one sentence, and a line pasted
    between two rows would hide in the middle of it."""
    runs: list[tuple[bool, list[str]]] = []
    for line in lines:
        row = _PIPE_ROW.match(line) is not None
        if runs and runs[-1][0] == row:
            runs[-1][1].append(line)
        else:
            runs.append((row, [line]))
    merged: list[tuple[bool, list[str]]] = []
    for is_table, run in runs:
        is_table = is_table and len(run) > 1
        if merged and not is_table and not merged[-1][0]:
            merged[-1][1].extend(run)  # a lone pipe line is text, joined to its neighbours
        else:
            merged.append((is_table, run))
    return merged


def _looks_like_title(line: str) -> bool:
    words = line.split()
    if not 0 < len(words) <= _TITLE_MAX_WORDS or line[-1] in ".,;:!?\"'”’)":
        return False
    if not any(ch.isalpha() for ch in line):
        return False
    return line.isupper() or (len(words) <= 6 and line.istitle())
