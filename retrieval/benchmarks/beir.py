"""BEIR-format data sets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), read in place."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ingestion.pipeline.chunk import ChunkDraft, chunk_blocks
from ingestion.pipeline.parse import Block


@dataclass(frozen=True)
class BeirDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    corpus: list[BeirDocument]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> doc id -> relevance


def dataset_load(folder: Path, *, splits: tuple[str, ...] = ("train", "test")) -> BeirDataset:
    """Read a BEIR data set folder; only the ``splits`` asked for are read."""
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        corpus = [
            BeirDocument(id=str(r["_id"]), title=r.get("title", ""), text=r["text"])
            for r in map(json.loads, fh)
        ]
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = {str(r["_id"]): r["text"] for r in map(json.loads, fh)}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in splits:
        judged: dict[str, dict[str, int]] = {}
        with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
            rows = csv.reader(fh, delimiter="\t")
            next(rows)  # header
            for query_id, doc_id, score in rows:
                judged.setdefault(query_id, {})[doc_id] = int(score)
        qrels[split] = judged
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def document_chunks(
    doc: BeirDocument, *, max_tokens: int, overlap: int, count_tokens
) -> list[ChunkDraft]:  # type: ignore[no-untyped-def]
    """Chunk a BEIR document as a parsed upload would be: a title block, then the body."""
    blocks = [Block(text=doc.title, page=None, heading="", kind="title")] if doc.title else []
    blocks.append(Block(text=doc.text, page=None, heading=doc.title, kind="text"))
    return chunk_blocks(blocks, max_tokens=max_tokens, overlap=overlap, count_tokens=count_tokens)
