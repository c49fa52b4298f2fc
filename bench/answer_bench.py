"""The answer benchmark (``make bench-answer``): pipeline overhead, time to first token, cache-hit
latency and the cost saved by routing and caching, on a replayed mix of 200 questions.

Runs on its own embedded database (``.data/bench-answer``): the sample knowledge base ingested
through the real pipeline (collection ``eval-sample``) plus 10k filler chunks with random unit
vectors. The questions are the golden set's questions about that knowledge base (answerable,
unanswerable, other languages, and multi-turn pairs): 200 turns drawn with a long-tailed
(Zipf) popularity, so popular questions repeat, plus exact-cache variants (case, spacing,
punctuation) and follow-ups in the same conversation.

The chat model is the loopback OpenAI-protocol server (tests/support/openai_server.py) answering
after a fixed delay. What counts as overhead: the whole turn as the caller sees it (input guard,
cache lookups, embedding, retrieval, rerank, context budget, validation, gate, every database
write) minus provider time, where provider time is the sum of the recorded attempts' latencies:
each measured around the SDK call, so the SDK's own request building and reply parsing count as
provider time. Cache hits are reported apart (exact and semantic), not as overhead. Tracing is on,
with spans stored in the database, and the heap is frozen after the model loads, both as in a
gunicorn worker.

``--profile`` runs the replay under pyinstrument and writes ``bench/results/answer_profile.txt``.
Writes ``bench/results/answer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAGAPP_DATA_DIR", str(REPO / ".data" / "bench-answer"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Sum  # noqa: E402

PROVIDER_DELAY_S = 0.2
FILLER_CHUNKS = 10_000
QUESTIONS = 200
SEED = 7
FOLLOW_UP_SHARE = 0.12  # of draws: a multi-turn pair (its first question, then the follow-up)
VARIANT_SHARE = 0.10  # of draws: an earlier question re-typed (exact cache after normalising)


def p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def seed_database() -> None:
    """The sample knowledge base through the real ingestion pipeline, then the filler."""
    from evals.corpus import corpus_ingest
    from ingestion import services
    from ingestion.models import Chunk, Collection, Document
    from retrieval.providers.registry import embedder

    if Collection.objects.filter(slug="eval-sample").exists():
        return
    corpus_ingest({"sample"})
    emb = embedder()
    filler = Document.objects.create(
        collection=services.collection_get_or_create(public=True),
        title="Filler",
        file="documents/filler.md",
        original_name="filler.md",
        content_hash="filler",
        status=Document.Status.READY,
        stage=Document.Stage.INDEXED,
    )
    rng = np.random.default_rng(SEED)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    for start in range(0, FILLER_CHUNKS, 1000):
        vectors = rng.normal(size=(1000, settings.RAGAPP_EMBEDDING_DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Chunk.objects.bulk_create(
            Chunk(
                document=filler,
                index=start + i,
                text=" ".join(rng.choice(words, size=60)),
                heading="Filler",
                token_count=80,
                embedding=vectors[i],
                embedding_model=emb.name,
            )
            for i in range(1000)
        )


def question_pool() -> tuple[list[str], list[tuple[str, str]]]:
    """(first-turn questions, (first question, follow-up) pairs) of the golden set about the
    sample knowledge base; injection probes and other collections are left out."""
    from evals.cases import golden_set_load

    first, pairs = [], []
    for case in golden_set_load().cases:
        if case.collection != "sample" or case.category == "injection":
            continue
        if case.history:
            pairs.append((case.history[-1], case.question))
        else:
            first.append(case.question)
    return first, pairs


def replay_mix(rng: random.Random) -> list[tuple[str, bool]]:
    """200 turns of (question, follow-up of the previous turn): popular questions repeat (Zipf),
    some are re-typed, some come with a follow-up in the same conversation."""
    first, pairs = question_pool()
    rng.shuffle(first)
    weights = [1 / rank for rank in range(1, len(first) + 1)]
    asked: list[str] = []
    mix: list[tuple[str, bool]] = []
    while len(mix) < QUESTIONS:
        roll = rng.random()
        if roll < FOLLOW_UP_SHARE and len(mix) < QUESTIONS - 1:
            opener, follow_up = rng.choice(pairs)
            mix += [(opener, False), (follow_up, True)]
        elif roll < FOLLOW_UP_SHARE + VARIANT_SHARE and asked:
            mix.append((rng.choice(asked).lower().rstrip("?") + " ?", False))
        else:
            question = rng.choices(first, weights)[0]
            asked.append(question)
            mix.append((question, False))
    return mix


def main(profile: bool = False) -> None:
    from django.test.utils import override_settings

    from agent.models import AnswerCache, CircuitBreaker, Message, UsageRecord
    from agent.providers.registry import chat_models
    from agent.services import answer_question
    from agent.services.streaming import answer_stream
    from agent.services.usage import cost_usd
    from ragapp.gunicorn_conf import post_worker_init
    from ragapp.tracing import tracing_setup

    tracing_setup()  # traced and stored as a served answer is (ragapp/wsgi.py)
    from tests.support.openai_server import FakeOpenAIServer, delay

    call_command("migrate", verbosity=0)
    seed_database()
    Message.objects.all().delete()
    UsageRecord.objects.all().delete()
    AnswerCache.objects.all().delete()
    CircuitBreaker.objects.all().delete()
    user, _ = get_user_model().objects.get_or_create(username="bench")

    def entry(model: str) -> dict:  # type: ignore[type-arg]
        return {
            "KIND": "openai",
            "OPTIONS": {"model": model, "base_url": server.url, "api_key": "bench"},
        }

    server = FakeOpenAIServer(default=delay(PROVIDER_DELAY_S)).start()
    extractive = {"KIND": "extractive", "OPTIONS": {}}
    mix = replay_mix(random.Random(SEED))
    overhead: list[float] = []
    ttft: list[float] = []
    total: list[float] = []
    hits: dict[str, list[float]] = {"exact": [], "semantic": []}
    profiler = None
    with override_settings(
        RAG_CHAT_MODELS=[entry("gpt-4o"), extractive],
        RAG_CHAT_ROUTES={"easy": [entry("gpt-4o-mini"), extractive]},
        OPENAI_BASE_URL=server.url,
    ):
        chat_models.cache_clear()
        post_worker_init(None)  # as a served process starts: the model loaded, the heap frozen
        answer_question(user=user, question="warm up the models and the lexical index")
        AnswerCache.objects.all().delete()
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        conversation = None
        for i, (question, follow_up) in enumerate(mix):
            started = time.perf_counter()
            if i % 4 == 0:  # a quarter streamed, for time to first token
                events = answer_stream(
                    user=user,
                    question=question,
                    conversation_id=conversation if follow_up else None,
                )
                outcome = [data for name, data in events if name == "done"][-1]
            else:
                outcome = answer_question(
                    user=user,
                    question=question,
                    conversation_id=conversation if follow_up else None,
                )
            elapsed = (time.perf_counter() - started) * 1000
            conversation = outcome.conversation.id
            message = outcome.message
            total.append(elapsed)
            if message.cache:
                hits[message.cache].append(elapsed)
            elif message.trace.get("provider_ms") is not None:
                overhead.append(elapsed - message.trace["provider_ms"])
            if "ttft_ms" in message.trace:
                ttft.append(message.trace["ttft_ms"])
        if profiler is not None:
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False)
            (REPO / "bench" / "results" / "answer_profile.txt").write_text(text)
    chat_models.cache_clear()
    server.stop()

    records = UsageRecord.objects.filter(user=user, succeeded=True)
    actual = float(records.aggregate(c=Sum("cost_usd"))["c"] or 0)
    # Baseline: every question to the flagship, no cache: flagship price of the tokens actually
    # used, plus the mean flagship call for each question a cache answered.
    flagship = [float(cost_usd("gpt-4o", r.input_tokens, r.output_tokens)) for r in records]
    mean_flagship = statistics.mean(flagship) if flagship else 0.0
    all_hits = hits["exact"] + hits["semantic"]
    baseline = sum(flagship) + mean_flagship * len(all_hits)
    result = {
        "questions": QUESTIONS,
        "distinct_questions": len({q.casefold().rstrip(" ?") for q, _ in mix}),
        "follow_ups": sum(follow_up for _, follow_up in mix),
        "chunks": FILLER_CHUNKS,
        "provider_delay_ms": PROVIDER_DELAY_S * 1000,
        "overhead_p50_ms": p(overhead, 0.5),
        "overhead_p95_ms": p(overhead, 0.95),
        "ttft_p95_ms": p(ttft, 0.95),
        "cache_hit_p50_ms": p(hits["exact"], 0.5),
        "cache_hit_p95_ms": p(hits["exact"], 0.95),
        "cache_hits": len(hits["exact"]),
        "semantic_cache_hit_p50_ms": p(hits["semantic"], 0.5),
        "semantic_cache_hit_p95_ms": p(hits["semantic"], 0.95),
        "semantic_cache_hits": len(hits["semantic"]),
        "cost_usd": round(actual, 6),
        "baseline_cost_usd": round(baseline, 6),
        "cost_saved_fraction": round(1 - actual / baseline, 3) if baseline else 0.0,
        "latency_saved_ms": round(
            len(all_hits) * (statistics.mean(total) - statistics.mean(all_hits)), 1
        )
        if all_hits
        else 0.0,
        "load_average": os.getloadavg(),
    }
    out = REPO / "bench" / "results" / "answer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="profile with pyinstrument")
    try:
        main(profile=parser.parse_args().profile)
    finally:
        if settings.EMBEDDED_DATABASE:  # the bench's own database server: stop it with the run
            from ragapp import embedded_db

            embedded_db.stop(settings.EMBEDDED_PGDATA)
