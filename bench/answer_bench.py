"""The answer benchmark (``make bench-answer``): pipeline overhead, time to first token, cache-hit
latency and the cost saved by routing and caching, on a replayed mix of 200 questions.

Runs on its own embedded database (``.data/bench-answer``) holding ~10k chunks: the sample
passages with real embeddings plus filler chunks with random unit vectors. The chat model is the
loopback OpenAI-protocol server (tests/support/openai_server.py) answering after a fixed delay, so
provider time is known and subtracted: overhead = answer latency - provider time.

Writes ``bench/results/answer.json``.
"""

from __future__ import annotations

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

BASE_QUESTIONS = [
    "How long is a password reset link valid?",
    "How many recovery codes do I get?",
    "How do I turn on two-factor authentication?",
    "How much does the Pro plan cost?",
    "Do notes edited offline sync later?",
    "How long must a new password be?",
    "Does Nimbus Notes send sign-in codes by SMS?",
    "What happens to other devices when I change my password?",
    "Why do reset links expire and how does that compare to two-factor codes?",
    "Explain the difference between recovery codes and authenticator codes.",
]
FOLLOW_UPS = ["What about the Pro plan?", "And for recovery codes?", "What if it expired?"]


def p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def seed_database() -> None:
    from ingestion import services
    from ingestion.models import Chunk, Document
    from retrieval.providers.registry import embedder
    from tests.integration.agent.conftest import SMALL_KB

    if Chunk.objects.count() >= FILLER_CHUNKS:
        return
    emb = embedder()
    collection = services.collection_get_or_create()
    rng = np.random.default_rng(SEED)
    for n, (title, passages) in enumerate(SMALL_KB.items()):
        document = Document.objects.create(
            collection=collection,
            title=title,
            file=f"documents/bench-{n}.md",
            original_name=f"bench-{n}.md",
            content_hash=f"bench-{n}",
            status=Document.Status.READY,
            stage=Document.Stage.INDEXED,
        )
        vectors = emb.embed_documents([t for _, t in passages])
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                index=i,
                text=t,
                heading=h,
                token_count=len(t) // 4,
                embedding=v,
                embedding_model=emb.name,
            )
            for i, ((h, t), v) in enumerate(zip(passages, vectors, strict=True))
        )
    filler = Document.objects.create(
        collection=collection,
        title="Filler",
        file="documents/filler.md",
        original_name="filler.md",
        content_hash="filler",
        status=Document.Status.READY,
        stage=Document.Stage.INDEXED,
    )
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


def replay_mix(rng: random.Random) -> list[tuple[str, bool]]:
    """(question, follow_up_of_previous): repeats, paraphrases and follow-ups."""
    mix: list[tuple[str, bool]] = []
    while len(mix) < QUESTIONS:
        roll = rng.random()
        question = rng.choice(BASE_QUESTIONS)
        if roll < 0.15 and mix:
            mix.append((rng.choice(FOLLOW_UPS), True))
        elif roll < 0.25:
            mix.append((question.lower().rstrip("?") + " ?", False))  # an exact-cache variant
        else:
            mix.append((question, False))
    return mix


def main() -> None:
    from django.test.utils import override_settings

    from agent.models import Message, UsageRecord
    from agent.providers.registry import chat_models
    from agent.services import answer_question
    from agent.services.streaming import answer_stream
    from agent.services.usage import cost_usd
    from tests.support.openai_server import FakeOpenAIServer, delay

    call_command("migrate", verbosity=0)
    seed_database()
    Message.objects.all().delete()
    UsageRecord.objects.all().delete()
    from agent.models import AnswerCache, CircuitBreaker

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
    rng = random.Random(SEED)
    overhead, ttft, hits, total = [], [], [], []
    with override_settings(
        RAG_CHAT_MODELS=[entry("gpt-4o"), extractive],
        RAG_CHAT_ROUTES={"easy": [entry("gpt-4o-mini"), extractive]},
        OPENAI_BASE_URL=server.url,
    ):
        chat_models.cache_clear()
        answer_question(user=user, question="warm up the models and the lexical index")
        conversation = None
        for i, (question, follow_up) in enumerate(replay_mix(rng)):
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
                hits.append(elapsed)
            elif message.trace.get("provider_ms") is not None:
                overhead.append(elapsed - message.trace["provider_ms"])
            if "ttft_ms" in message.trace:
                ttft.append(message.trace["ttft_ms"])
    chat_models.cache_clear()
    server.stop()

    records = UsageRecord.objects.filter(user=user, succeeded=True)
    actual = float(records.aggregate(c=Sum("cost_usd"))["c"] or 0)
    # Baseline: every question to the flagship, no cache: flagship price of the tokens actually
    # used, plus the mean flagship call for each question the cache answered.
    flagship = [float(cost_usd("gpt-4o", r.input_tokens, r.output_tokens)) for r in records]
    mean_flagship = statistics.mean(flagship) if flagship else 0.0
    baseline = sum(flagship) + mean_flagship * len(hits)
    result = {
        "questions": QUESTIONS,
        "chunks": FILLER_CHUNKS,
        "provider_delay_ms": PROVIDER_DELAY_S * 1000,
        "overhead_p50_ms": p(overhead, 0.5),
        "overhead_p95_ms": p(overhead, 0.95),
        "ttft_p95_ms": p(ttft, 0.95),
        "cache_hit_p50_ms": p(hits, 0.5),
        "cache_hit_p95_ms": p(hits, 0.95),
        "cache_hits": len(hits),
        "cost_usd": round(actual, 6),
        "baseline_cost_usd": round(baseline, 6),
        "cost_saved_fraction": round(1 - actual / baseline, 3) if baseline else 0.0,
        "latency_saved_ms": round(len(hits) * (statistics.mean(total) - statistics.mean(hits)), 1)
        if hits
        else 0.0,
        "load_average": os.getloadavg(),
    }
    out = REPO / "bench" / "results" / "answer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        if settings.EMBEDDED_DATABASE:  # the bench's own database server: stop it with the run
            from ragapp import embedded_db

            embedded_db.stop(settings.EMBEDDED_PGDATA)
