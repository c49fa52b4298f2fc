"""Runs golden-set cases through the public answering and retrieval services and grades them.

Everything here writes only to the database the caller provides (``evals.database`` gives the
management command a dedicated one); nothing is committed, see ``eval_transaction``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.test import override_settings

from evals.cases import Case, GoldenSet
from evals.corpus import CANARY, Corpus, corpus_ingest
from evals.graders import (
    NOT_APPLICABLE,
    Grade,
    Reply,
    Retrieved,
    assertion_grade,
    reference_grade,
    retrieval_grade,
)
from ragapp.errors import AppError

logger = logging.getLogger(__name__)

GRADERS = ("assertion", "reference", "retrieval", "judge")
EVAL_USERNAME = "eval-runner"
# Every case is answered afresh: a cached answer would grade the cache, and would make the second
# run of a comparison (or a repeated history question) replay the first.
NO_ANSWER_CACHE = {"RAGAPP_CACHE_EXACT": False, "RAGAPP_CACHE_SEMANTIC": False}


@dataclass
class CaseResult:
    case: Case
    grades: dict[str, Grade] = field(default_factory=dict)
    reply: Reply | None = None
    retrieved_files: list[str] = field(default_factory=list)
    model: str = ""
    skipped: str = ""  # why the case did not run, e.g. its documents are unavailable
    seconds: float = 0.0

    def failed(self, grader: str) -> bool:
        grade = self.grades.get(grader)
        return grade is not None and grade.passed is False

    @property
    def diagnosis(self) -> str:
        """Which half broke: retrieval (the expected document was not found) or generation."""
        if self.failed("retrieval"):
            return "retrieval"
        if any(self.failed(g) for g in ("assertion", "reference", "judge")):
            return "generation"
        return ""


@dataclass
class SuiteRun:
    prompt_ref: str
    prompt_hash: str
    results: list[CaseResult]
    corpus: Corpus
    versions: dict[str, int]
    seconds: float = 0.0
    judge_model: str = ""

    @property
    def chat_models(self) -> list[str]:
        return sorted({r.model for r in self.results if r.model})


@contextlib.contextmanager
def eval_transaction() -> Iterator[None]:
    """One transaction around the whole run, always rolled back.

    Uploads enqueue their ingestion task on commit; the broker of the embedded default is a table
    in the app's own database, so committing would leak tasks there. Rolling back means nothing
    the eval writes (documents, conversations, usage) survives it, even in a shared database.
    """
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def eval_user():  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=EVAL_USERNAME)
    return user


def _retrieve(case: Case, corpus: Corpus) -> list[Retrieved]:
    from retrieval.services import passages_retrieve

    found = passages_retrieve(
        case.question, collection_ids=[corpus.collection_ids[case.collection]]
    )
    return [
        Retrieved(
            chunk_id=c.chunk_id,
            document_id=c.document_id,
            file=corpus.files_by_document.get(str(c.document_id), "?"),
            text=c.text,
        )
        for c in found
    ]


def _ask(case: Case, *, slug: str, user) -> tuple[Reply, str]:  # type: ignore[no-untyped-def]
    from agent.services import answer_question

    conversation_id = None
    for earlier in case.history:
        conversation_id = answer_question(
            user=user, question=earlier, conversation_id=conversation_id, collection=slug
        ).conversation.id
    outcome = answer_question(
        user=user, question=case.question, conversation_id=conversation_id, collection=slug
    )
    message = outcome.message
    message.refresh_from_db()  # grade what was stored, after the JSON round trip
    reply = Reply(
        text=message.text,
        decision=message.decision,
        citations=message.citations,
        prompt_stamp=f"{message.prompt_id}@{message.prompt_version}",
    )
    return reply, message.model


def _chunk_texts(reply: Reply) -> dict[int, tuple[str, str]]:
    from ingestion.models import Chunk

    """The stored text of each cited chunk, as the answer may show it: a chunk flagged at ingestion
    is cited with its instruction sentences removed (``RAGAPP_FLAGGED_CHUNKS=fence``)."""
    from agent.services.answering import passage_fence

    fenced = {c["chunk_id"] for c in reply.citations if c.get("flagged")}
    ids = [c["chunk_id"] for c in reply.citations if isinstance(c.get("chunk_id"), int)]
    rows = Chunk.objects.filter(id__in=ids).values_list("id", "document_id", "text")
    return {
        cid: (str(doc), passage_fence(text)[0] if cid in fenced else text)
        for cid, doc, text in rows
    }


def case_run(
    case: Case, *, corpus: Corpus, user, prompt, judge=None, judge_prompt=None
) -> CaseResult:  # type: ignore[no-untyped-def]
    """Retrieve and answer one case, then grade it with every grader."""
    if case.collection in corpus.unavailable:
        return CaseResult(case=case, skipped=corpus.unavailable[case.collection])
    started = time.perf_counter()
    result = CaseResult(case=case)
    try:
        reply, result.model = _ask(case, slug=corpus.slugs[case.collection], user=user)
    except AppError as exc:
        if exc.code == "prompt_injection":  # the input guard refused it before any model call
            reply = Reply(text=exc.message, decision="refused", citations=[], rejected=True)
        else:
            result.grades["assertion"] = Grade(passed=False, reasons=(f"raised {exc.code}: {exc}",))
            reply = Reply(text="", decision="error", citations=[])
            result.grades["reference"] = reference_grade(case, reply, files_by_document={})
            result.seconds = time.perf_counter() - started
            return result
    # The retrieval half, graded on its own; skipped when nothing needs it (a bare refusal).
    retrieved = _retrieve(case, corpus) if case.source or reply.citations else []
    result.retrieved_files = [r.file for r in retrieved]
    result.grades["retrieval"] = retrieval_grade(case, retrieved)
    result.reply = reply
    result.grades["assertion"] = assertion_grade(
        case,
        reply,
        retrieved=retrieved,
        chunk_texts=_chunk_texts(reply),
        prompt_ref=f"{prompt.id}@{prompt.version}",
        prompt_system=prompt.system,
        canaries=[CANARY],
    )
    result.grades["reference"] = reference_grade(
        case, reply, files_by_document=corpus.files_by_document
    )
    if judge is not None:
        from evals.judge import judge_grade

        result.grades["judge"] = judge_grade(
            judge, prompt=judge_prompt, case=case, reply=reply, retrieved=retrieved
        )
    else:
        result.grades["judge"] = NOT_APPLICABLE
    result.seconds = time.perf_counter() - started
    return result


def suite_run(golden: GoldenSet, *, prompt_refs: list[str], judge=None) -> list[SuiteRun]:  # type: ignore[no-untyped-def]
    """Ingest the corpus once, then run every case once per prompt version, in order.

    The caller owns the transaction (see ``eval_transaction``).
    """
    from agent.pipeline.prompt import prompt_load

    corpus = corpus_ingest({c.collection for c in golden.cases})
    user = eval_user()
    judge_prompt = None
    if judge is not None:
        from evals.judge import judge_prompt_load

        judge_prompt = judge_prompt_load()
    runs = []
    for ref in prompt_refs:
        prompt = prompt_load(ref)
        started = time.perf_counter()
        with override_settings(RAGAPP_PROMPT=ref, **NO_ANSWER_CACHE):
            results = [
                case_run(
                    case,
                    corpus=corpus,
                    user=user,
                    prompt=prompt,
                    judge=judge,
                    judge_prompt=judge_prompt,
                )
                for case in golden.cases
            ]
        runs.append(
            SuiteRun(
                prompt_ref=ref,
                prompt_hash=prompt.hash,
                results=results,
                corpus=corpus,
                versions=golden.versions,
                seconds=time.perf_counter() - started,
                judge_model=getattr(judge, "model", "") if judge is not None else "",
            )
        )
        logger.info("eval run finished", extra={"prompt": ref, "cases": len(results)})
    return runs
