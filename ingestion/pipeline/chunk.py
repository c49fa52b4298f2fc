"""Split parsed blocks into retrieval chunks that respect the document's structure.

Pure step: no ORM. Rules, in order of strength:
- a chunk never spans two sections (a section is a heading and the blocks under it; a run of
  titles with nothing between them belongs to the section that follows);
- every chunk has at most `max_tokens` tokens as measured by `count_tokens`;
- breaks fall at block boundaries when a block fits in a chunk of its own, else at sentence
  boundaries, else between words (else between characters, for a giant "word");
- consecutive text chunks of one section share about `overlap` tokens: the next chunk starts with
  the last words of the previous one. Tables take no part in overlap: a table is kept whole
  where it fits in a chunk, and otherwise split by rows with its header repeated in each part.
The heading is not prepended; it is stored on the chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ingestion.pipeline.parse import Block

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n\s*")
_WORD = re.compile(r"\S+")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")
_BLOCK_SEPARATOR = "\n\n"

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class ChunkDraft:
    """One chunk ready to embed; `index` runs 0..n-1 over the document."""

    index: int
    text: str
    page: int | None
    heading: str
    token_count: int


@dataclass(frozen=True)
class _Piece:
    """A span of one block's text, or (for a table part) text of its own."""

    block: Block
    key: tuple[int, int]  # (block number, table part); equal keys render as one slice
    start: int = 0
    end: int = 0
    own_text: str | None = None

    @property
    def is_table(self) -> bool:
        return self.own_text is not None


def chunk_blocks(
    blocks: list[Block], *, max_tokens: int, overlap: int, count_tokens: CountTokens
) -> list[ChunkDraft]:
    """Group `blocks` into chunks of at most `max_tokens` tokens; see the module docstring."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and less than max_tokens")
    chunks: list[ChunkDraft] = []
    for heading, section in _sections(blocks):
        packer = _SectionPacker(max_tokens=max_tokens, overlap=overlap, count_tokens=count_tokens)
        for number, block in section:
            packer.add(number, block)
        for pieces in packer.finish():
            text = _render(pieces)
            if text.strip():
                chunks.append(
                    ChunkDraft(
                        index=len(chunks),
                        text=text,
                        page=pieces[0].block.page,
                        heading=heading,
                        token_count=count_tokens(text),
                    )
                )
    return chunks


def _sections(blocks: list[Block]) -> list[tuple[str, list[tuple[int, Block]]]]:
    """Cut the blocks into (heading, numbered blocks) sections."""
    sections: list[tuple[str, list[tuple[int, Block]]]] = []
    current: list[tuple[int, Block]] = []
    for number, block in enumerate(blocks):
        if not block.text.strip():
            continue
        if current:
            last = current[-1][1]
            has_body = any(b.kind != "title" for _, b in current)
            if (block.kind == "title" and has_body) or (
                block.kind != "title" and last.kind != "title" and block.heading != last.heading
            ):
                sections.append((last.heading, current))
                current = []
        current.append((number, block))
    if current:
        sections.append((current[-1][1].heading, current))
    return sections


class _SectionPacker:
    """Packs the blocks of one section into lists of pieces, one list per chunk."""

    def __init__(self, *, max_tokens: int, overlap: int, count_tokens: CountTokens) -> None:
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.count = count_tokens
        self.done: list[list[_Piece]] = []
        self.current: list[_Piece] = []

    def fits(self, pieces: list[_Piece], limit: int | None = None) -> bool:
        return self.count(_render(pieces)) <= (self.max_tokens if limit is None else limit)

    def add(self, number: int, block: Block) -> None:
        whole = [_Piece(block, (number, 0), 0, len(block.text))]
        if block.kind == "table":
            whole = [_Piece(block, (number, 0), own_text=block.text)]
        if self.fits(self.current + whole):
            self.current += whole
        elif self.fits(whole):
            # Break at the block boundary rather than split a block that fits on its own.
            self._start_new_chunk(whole)
        elif block.kind == "table":
            self._close()
            for part, text in enumerate(self._table_parts(block.text), start=1):
                self.current = [_Piece(block, (number, part), own_text=text)]
                self._close()
        else:
            for piece in self._split_text(number, block):
                if self.fits(self.current + [piece]):
                    self.current.append(piece)
                else:
                    self._start_new_chunk([piece])

    def finish(self) -> list[list[_Piece]]:
        self._close()
        # A chunk holding nothing but the section's title says only what its stored heading says
        # (a title followed by a table too big to share a chunk with it); keep it only if alone.
        with_body = [pieces for pieces in self.done if any(p.block.kind != "title" for p in pieces)]
        return with_body or self.done

    def _close(self) -> None:
        if self.current:
            self.done.append(self.current)
        self.current = []

    def _start_new_chunk(self, pieces: list[_Piece]) -> None:
        """Close the current chunk and open one that starts with its tail, then `pieces`."""
        previous = self.current
        self._close()
        if pieces[0].is_table:
            self.current = list(pieces)
            return
        # The largest tail (up to `overlap` tokens) that still leaves room for `pieces`.
        low, high, best = 0, self.overlap, []
        while low <= high:
            budget = (low + high) // 2
            tail = self._tail(previous, budget)
            if self.fits(tail + pieces):
                best, low = tail, budget + 1
            else:
                high = budget - 1
        self.current = best + list(pieces)

    def _tail(self, pieces: list[_Piece], budget: int) -> list[_Piece]:
        """The last words of `pieces` that fit in `budget` tokens; tables are never carried."""
        tail: list[_Piece] = []
        if budget <= 0:
            return tail
        for piece in reversed(pieces):
            if piece.is_table:
                break
            if self.fits([piece] + tail, budget):
                tail.insert(0, piece)
                continue
            words = [m.start() + piece.start for m in _WORD.finditer(_text_of(piece))]
            # Smallest word index whose suffix fits: suffixes shrink as the index grows.
            low, high, start = 0, len(words) - 1, None
            while low <= high:
                middle = (low + high) // 2
                suffix = _Piece(piece.block, piece.key, words[middle], piece.end)
                if self.fits([suffix] + tail, budget):
                    start, high = words[middle], middle - 1
                else:
                    low = middle + 1
            if start is not None:
                tail.insert(0, _Piece(piece.block, piece.key, start, piece.end))
            break
        return tail

    def _split_text(self, number: int, block: Block) -> list[_Piece]:
        """Sentence pieces of a block, each of which fits in a chunk on its own."""
        pieces: list[_Piece] = []
        for start, end in _spans(block.text, _SENTENCE_END):
            piece = _Piece(block, (number, 0), start, end)
            if self.fits([piece]):
                pieces.append(piece)
                continue
            # Windows leave room for the overlap that the next chunk starts with.
            limit = self.max_tokens - self.overlap
            for word_start, word_end in self._windows(block.text, start, end, limit):
                pieces.append(_Piece(block, (number, 0), word_start, word_end))
        return pieces

    def _windows(
        self, text: str, start: int, end: int, limit: int | None = None
    ) -> list[tuple[int, int]]:
        """Cut text[start:end] into the fewest word windows that fit, else character windows."""

        def fits(a: int, b: int) -> bool:
            return self._fits_text(text[a:b], limit)

        words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(text[start:end])]
        windows: list[tuple[int, int]] = []
        for span in _greedy(words, fits):
            if fits(*span):
                windows.append(span)
            else:  # one "word" too long for a chunk, e.g. an encoded blob
                windows += _greedy([(i, i + 1) for i in range(span[0], span[1])], fits)
        return windows

    def _fits_text(self, text: str, limit: int | None = None) -> bool:
        return self.count(text) <= (self.max_tokens if limit is None else limit)

    def _table_parts(self, table: str) -> list[str]:
        """Split a Markdown table into parts that fit, each starting with the header rows."""
        lines = [line for line in table.splitlines() if line.strip()]
        size = 2 if len(lines) > 1 and _TABLE_RULE.match(lines[1]) else 1
        header, rows = lines[:size], lines[size:]
        if not rows or not self._fits_text("\n".join(header + rows[:1])):
            # The header leaves no room for rows: the table can only be read as text.
            return [table[a:b] for a, b in self._windows(table, 0, len(table))]
        parts: list[str] = []
        group: list[str] = []
        for row in rows:
            if self._fits_text("\n".join(header + group + [row])):
                group.append(row)
                continue
            if group:
                parts.append("\n".join(header + group))
            group = [row]
            if not self._fits_text("\n".join(header + group)):
                # A row too long even for a part of its own: cut it by words, header dropped.
                parts += [row[a:b] for a, b in self._windows(row, 0, len(row))]
                group = []
        if group:
            parts.append("\n".join(header + group))
        return parts


def _greedy(
    units: list[tuple[int, int]], fits: Callable[[int, int], bool]
) -> list[tuple[int, int]]:
    """Join consecutive (start, end) units into the longest runs that fit (binary search)."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        low, high, j = i + 1, len(units), i + 1  # a single unit always makes progress
        while low <= high:
            middle = (low + high) // 2
            if fits(units[i][0], units[middle - 1][1]):
                j, low = middle, middle + 1
            else:
                high = middle - 1
        runs.append((units[i][0], units[j - 1][1]))
        i = j
    return runs


def _spans(text: str, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """(start, end) of the non-blank pieces of `text` between matches of `separator`."""
    spans: list[tuple[int, int]] = []
    position = 0
    for match in separator.finditer(text):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _text_of(piece: _Piece) -> str:
    if piece.own_text is not None:
        return piece.own_text
    return piece.block.text[piece.start : piece.end]


def _render(pieces: list[_Piece]) -> str:
    """Join pieces: a run of one block renders as one slice of it; a blank line between blocks."""
    groups: list[str] = []
    index = 0
    while index < len(pieces):
        first = pieces[index]
        last = first
        while index + 1 < len(pieces) and pieces[index + 1].key == first.key:
            index += 1
            last = pieces[index]
        if first.own_text is not None:
            groups.append(first.own_text)
        else:
            groups.append(first.block.text[first.start : last.end].strip())
        index += 1
    return _BLOCK_SEPARATOR.join(group for group in groups if group)
