"""A second process for the consistency test: reads queries on stdin, prints the chunk ids that
BM25 finds, one JSON list per line. It keeps its own in-memory index between queries."""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")
django.setup()

from retrieval.selectors import chunk_lexical_search  # noqa: E402

MODEL = sys.argv[1]
print("ready", flush=True)
for line in sys.stdin:
    hits = chunk_lexical_search(line.strip(), model=MODEL, collection_ids=None, limit=10)
    print(json.dumps([cid for cid, _ in hits]), flush=True)
