"""Chunking: size bounds, overlap, section boundaries, tables, pages and indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.pipeline.chunk import ChunkDraft, chunk_blocks
from ingestion.pipeline.parse import Block, parse_file

SAMPLE_KB = Path(__file__).resolve().parents[3] / "sample_kb"


def count_words(text: str) -> int:
    return len(text.split())


def sentence(tag: str, words: int = 8) -> str:
    return " ".join(f"{tag}w{i}" for i in range(words - 1)) + f" {tag}end."


def paragraph(tag: str, sentences: int, words: int = 8) -> str:
    return " ".join(sentence(f"{tag}s{i}", words) for i in range(sentences))


def section(heading: str, paragraphs: list[str], page: int | None = 1) -> list[Block]:
    return [Block(heading, page, heading, "title")] + [
        Block(text, page, heading, "text") for text in paragraphs
    ]


def chunk(blocks: list[Block], max_tokens: int = 40, overlap: int = 6) -> list[ChunkDraft]:
    return chunk_blocks(blocks, max_tokens=max_tokens, overlap=overlap, count_tokens=count_words)


def markdown_table(rows: int) -> str:
    lines = ["| Plan | Price |", "| --- | --- |"]
    return "\n".join(lines + [f"| plan{i} | ${i} |" for i in range(rows)])


LONG_DOCUMENT = (
    section("Alpha", [paragraph("a1", 3), paragraph("a2", 9), paragraph("a3", 2)], page=1)
    + section("Beta", [paragraph("b1", 12)], page=2)
    + section("Gamma", [paragraph("c1", 1)], page=3)
)


@pytest.mark.parametrize("max_tokens", [12, 25, 40, 100])
def test_every_chunk_fits_within_max_tokens(max_tokens):
    chunks = chunk(LONG_DOCUMENT, max_tokens=max_tokens, overlap=max_tokens // 4)

    assert chunks
    assert all(0 < c.token_count <= max_tokens for c in chunks)
    assert all(c.token_count == count_words(c.text) for c in chunks)


def test_indexes_run_from_zero_without_gaps():
    chunks = chunk(LONG_DOCUMENT)

    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_no_chunk_is_empty_or_whitespace():
    blocks = section("Alpha", ["   ", paragraph("a", 2), "\n\t"]) + [Block(" ", 1, "Alpha", "text")]

    chunks = chunk(blocks)

    assert chunks and all(c.text.strip() for c in chunks)


def test_a_chunk_never_spans_two_sections():
    chunks = chunk(LONG_DOCUMENT, max_tokens=30, overlap=8)

    for c in chunks:
        tags = {word[:2] for word in c.text.split() if word[:1] in "abc" and word[1:2].isdigit()}
        assert tags <= {"Alpha": {"a1", "a2", "a3"}, "Beta": {"b1"}, "Gamma": {"c1"}}[c.heading]
    assert [c.heading for c in chunks] == sorted(c.heading for c in chunks)


def test_every_word_of_the_document_lands_in_some_chunk():
    chunks = chunk(LONG_DOCUMENT, max_tokens=30, overlap=8)

    chunked = {word for c in chunks for word in c.text.split()}
    source = {word for block in LONG_DOCUMENT for word in block.text.split()}

    assert source <= chunked


def test_consecutive_chunks_of_a_section_share_about_overlap_tokens():
    blocks = section("Beta", [paragraph("b", 20)])

    chunks = chunk(blocks, max_tokens=40, overlap=6)

    assert len(chunks) > 3
    for previous, following in zip(chunks, chunks[1:], strict=False):
        shared = _shared_words(previous.text, following.text)
        assert 3 <= shared <= 6


def test_chunks_of_different_sections_share_nothing():
    chunks = chunk(
        section("Alpha", [paragraph("a", 4)]) + section("Beta", [paragraph("b", 4)]), 40, 6
    )

    alpha, beta = chunks
    assert (alpha.heading, beta.heading) == ("Alpha", "Beta")
    assert not set(alpha.text.split()) & set(beta.text.split())


def test_a_short_section_is_one_chunk_that_starts_with_its_title():
    chunks = chunk(section("Refunds", ["Refunds are available within 14 days of purchase."]))

    assert [(c.text, c.heading) for c in chunks] == [
        ("Refunds\n\nRefunds are available within 14 days of purchase.", "Refunds")
    ]


def test_the_heading_is_not_prepended_to_later_chunks():
    chunks = chunk(section("Beta", [paragraph("b", 20)]), max_tokens=40, overlap=0)

    assert chunks[0].text.startswith("Beta\n\n")
    assert not any(c.text.startswith("Beta") for c in chunks[1:])


def test_blocks_that_fit_are_never_split_across_chunks():
    paragraphs = [paragraph(f"p{i}", 2) for i in range(8)]  # 16 words each

    chunks = chunk(section("Alpha", paragraphs), max_tokens=40, overlap=0)

    for text in paragraphs:
        assert sum(text in c.text for c in chunks) == 1


def test_breaks_fall_between_sentences_when_a_block_is_too_long():
    chunks = chunk(section("Alpha", [paragraph("a", 12)]), max_tokens=40, overlap=0)

    assert len(chunks) > 1
    assert all(c.text.endswith(".") for c in chunks)


def test_a_sentence_longer_than_a_chunk_is_split_between_words():
    words = " ".join(f"w{i}" for i in range(100))

    chunks = chunk(section("Alpha", [words]), max_tokens=30, overlap=5)

    assert all(c.token_count <= 30 for c in chunks)
    assert {f"w{i}" for i in range(100)} <= {w for c in chunks for w in c.text.split()}
    assert _shared_words(chunks[1].text, chunks[2].text) == 5


def test_a_word_longer_than_a_chunk_is_split_between_characters():
    chunks = chunk_blocks(
        [Block("x" * 25, None, "", "text")], max_tokens=10, overlap=0, count_tokens=len
    )

    assert [c.text for c in chunks] == ["x" * 10, "x" * 10, "x" * 5]


def test_a_table_that_fits_stays_whole():
    table = Block(markdown_table(5), 1, "Plans", "table")

    chunks = chunk([Block("Plans", 1, "Plans", "title"), table], max_tokens=60)

    assert len(chunks) == 1
    assert table.text in chunks[0].text


def test_a_long_table_is_split_by_rows_with_the_header_repeated():
    table = Block(markdown_table(40), 1, "Plans", "table")

    chunks = chunk([table], max_tokens=30, overlap=6)
    rows = [line for c in chunks for line in c.text.splitlines()[2:]]

    assert len(chunks) > 1
    for c in chunks:
        assert c.text.splitlines()[:2] == ["| Plan | Price |", "| --- | --- |"]
        assert c.token_count <= 30
    assert rows == [f"| plan{i} | ${i} |" for i in range(40)]


def test_a_title_alone_before_a_large_table_makes_no_chunk_of_its_own():
    blocks = [Block("Plans", 1, "Plans", "title"), Block(markdown_table(40), 1, "Plans", "table")]

    chunks = chunk(blocks, max_tokens=30)

    assert all("| Plan | Price |" in c.text for c in chunks)


def test_consecutive_titles_open_one_section_under_the_last_title():
    blocks = [
        Block("Billing", 1, "Billing", "title"),
        Block("Refunds", 1, "Refunds", "title"),
        Block("Refunds are available within 14 days.", 1, "Refunds", "text"),
    ]

    chunks = chunk(blocks)

    assert [(c.text, c.heading) for c in chunks] == [
        ("Billing\n\nRefunds\n\nRefunds are available within 14 days.", "Refunds")
    ]


def test_page_is_the_page_of_the_first_block_in_the_chunk():
    blocks = [
        Block(paragraph("one", 2), 1, "", "text"),
        Block(paragraph("two", 2), 2, "", "text"),
        Block(paragraph("three", 2), 3, "", "text"),
    ]

    chunks = chunk(blocks, max_tokens=35, overlap=0)

    assert [(c.page, c.text.split()[0]) for c in chunks] == [(1, "ones0w0"), (3, "threes0w0")]


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        chunk(LONG_DOCUMENT, max_tokens=10, overlap=10)
    with pytest.raises(ValueError):
        chunk(LONG_DOCUMENT, max_tokens=0, overlap=0)


def test_the_sample_knowledge_base_chunks_within_bounds_under_headings():
    for path in sorted(SAMPLE_KB.glob("*-*.*")):
        document = parse_file(path, filename=path.name)

        chunks = chunk(document.blocks, max_tokens=80, overlap=10)

        assert chunks, path.name
        assert all(c.token_count <= 80 for c in chunks)
        assert [c.index for c in chunks] == list(range(len(chunks)))
    billing = parse_file(SAMPLE_KB / "billing-and-plans.html", filename="billing-and-plans.html")
    refunds = next(
        c for c in chunk(billing.blocks, max_tokens=80, overlap=10) if "14 days" in c.text
    )
    assert refunds.heading == "Refunds"


def _shared_words(previous: str, following: str) -> int:
    """Length of the longest suffix of `previous` that starts `following` (in words)."""
    before, after = previous.split(), following.split()
    for size in range(min(len(before), len(after)), 0, -1):
        if before[-size:] == after[:size]:
            return size
    return 0
