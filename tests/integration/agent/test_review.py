"""The human review loop through the API and the reviewer pages: what puts an answer in the queue,
who may see it, the reviewer's verdict and corrected answer, and promotion to the eval set."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from agent.models import Conversation, Feedback, GuardrailEvent, Message, ReviewItem
from agent.services.review import review_item_flag, review_sampled
from evals.cases import golden_set_load
from ingestion import services as ingestion_services
from ingestion.models import Chunk, Document
from tests.support.openai_server import ok

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How long is a password reset link valid?"
CLAIM = "Password reset links expire after 30 minutes."
EVIDENCE = "Password reset links expire after 30 minutes"
CLAIM_1 = {"text": CLAIM, "passages": [1]}


@pytest.fixture(autouse=True)
def no_random_sample(settings):  # type: ignore[no-untyped-def]
    """Tests that are not about the sample must not depend on which ids it picks."""
    settings.RAGAPP_REVIEW_SAMPLE_RATE = 0.0


@pytest.fixture
def cases_dir(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.RAGAPP_EVAL_CASES_DIR = tmp_path / "cases"
    return settings.RAGAPP_EVAL_CASES_DIR


@pytest.fixture
def corpus_document(db):  # type: ignore[no-untyped-def]
    """A stored document named like a file of the eval corpus (the sample knowledge base)."""
    document = Document.objects.create(
        collection=ingestion_services.collection_get_or_create(),
        title="Account and security",
        file="documents/account-and-security.md",
        original_name="account-and-security.md",
        content_hash="account-and-security",
        status=Document.Status.READY,
        stage=Document.Stage.INDEXED,
    )
    Chunk.objects.create(
        document=document,
        index=0,
        text=f"{EVIDENCE}. Request a new link from the sign-in page.",
        embedding=[0.0] * 383 + [1.0],
        embedding_model="test",
    )
    return document


def ask(client, question: str = QUESTION, **body: Any):  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/ask", {"question": question, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def answered_turn(user, *, decision: str = "answered") -> Message:  # type: ignore[no-untyped-def]
    """A stored question and answer, as the answering service leaves them."""
    conversation = Conversation.objects.create(user=user, title=QUESTION)
    Message.objects.create(conversation=conversation, role="user", text="Tell me about passwords.")
    Message.objects.create(conversation=conversation, role="assistant", text="They are secret.")
    Message.objects.create(conversation=conversation, role="user", text=QUESTION)
    return Message.objects.create(
        conversation=conversation, role="assistant", text=f"{CLAIM} [1]", decision=decision
    )


def item_of(message_id: int) -> ReviewItem:
    return ReviewItem.objects.get(message_id=message_id)


# --- What puts an answer in the queue -----------------------------------------------------------


def test_an_escalated_answer_enters_the_queue_as_escalated(client_for, alice, small_kb, chain):
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.35, "claims": [CLAIM_1]}))

    body = ask(client_for(alice))

    assert body["decision"] == "escalated"
    assert "a person who will follow up" in body["answer"]
    assert item_of(body["message"]).reasons == ["escalated"]


def test_a_confident_grounded_answer_stays_out_of_the_queue(client_for, alice, small_kb, chain):
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.9, "claims": [CLAIM_1]}))

    body = ask(client_for(alice))

    assert body["decision"] == "answered"
    assert not ReviewItem.objects.exists()


def test_an_answer_whose_turn_fired_a_guardrail_enters_the_queue(
    client_for, alice, small_kb, chain
):
    claims = [
        CLAIM_1,
        {"text": "Only the most recent link works.", "passages": [1]},
        {"text": "Links are sent by carrier pigeon.", "passages": [9]},  # not retrieved
    ]
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.9, "claims": claims}))

    body = ask(client_for(alice))

    assert body["decision"] == "answered" and "pigeon" not in body["answer"]
    assert GuardrailEvent.objects.filter(rule="invalid_citation", action="removed").exists()
    assert item_of(body["message"]).reasons == ["guardrail"]


def test_a_refusal_for_lack_of_evidence_is_flagged_by_its_guardrail(client_for, alice):
    body = ask(client_for(alice), "What is the boiling point of mercury?")

    assert body["decision"] == "refused"
    assert item_of(body["message"]).reasons == ["guardrail"]


def test_a_guardrail_event_of_an_earlier_turn_does_not_flag_a_later_answer(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.9, "claims": [CLAIM_1]}))
    client = client_for(alice)
    first = ask(client, "What is the boiling point of mercury?")

    second = ask(client, QUESTION, conversation=first["conversation"])

    assert second["decision"] == "answered"
    assert ReviewItem.objects.filter(message_id=first["message"]).exists()
    assert not ReviewItem.objects.filter(message_id=second["message"]).exists()


def test_a_thumbs_down_with_a_reason_enters_the_queue_and_a_thumbs_up_does_not(client_for, alice):
    down, up = answered_turn(alice), answered_turn(alice)
    client = client_for(alice)

    response = client.post(
        "/api/v1/feedback",
        {"message": down.id, "rating": -1, "reason": "incomplete", "comment": "Which link?"},
        format="json",
    )
    client.post("/api/v1/feedback", {"message": up.id, "rating": 1}, format="json")

    assert response.status_code == 201
    feedback = Feedback.objects.get(message=down)
    assert (feedback.rating, feedback.reason, feedback.comment) == (-1, "incomplete", "Which link?")
    assert item_of(down.id).reasons == ["thumbs_down"]
    assert not ReviewItem.objects.filter(message=up).exists()


def test_feedback_rejects_an_unknown_reason_and_a_reason_on_a_thumbs_up(client_for, alice):
    message = answered_turn(alice)
    client = client_for(alice)

    unknown = client.post(
        "/api/v1/feedback", {"message": message.id, "rating": -1, "reason": "meh"}, format="json"
    )
    on_up = client.post(
        "/api/v1/feedback", {"message": message.id, "rating": 1, "reason": "wrong"}, format="json"
    )

    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_input"
    assert on_up.status_code == 400 and on_up.json()["error"]["code"] == "reason_on_thumbs_up"
    assert not Feedback.objects.exists() and not ReviewItem.objects.exists()


def test_the_random_sample_takes_answered_questions_at_the_configured_rate(
    client_for, alice, small_kb, chain, settings
):
    settings.RAGAPP_REVIEW_SAMPLE_RATE = 1.0
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.9, "claims": [CLAIM_1]}))

    body = ask(client_for(alice))

    assert item_of(body["message"]).reasons == ["sample"]


def test_the_sample_is_decided_by_the_message_id_alone():
    picked = [i for i in range(20_000) if review_sampled(i, rate=0.05)]

    assert 0.04 < len(picked) / 20_000 < 0.06
    assert picked == [i for i in range(20_000) if review_sampled(i, rate=0.05)]
    assert not any(review_sampled(i, rate=0.0) for i in range(1000))


def test_one_item_per_answer_collects_its_reasons_and_a_new_reason_reopens_it(alice, carol):
    message = answered_turn(alice)
    item = review_item_flag(message=message, reasons=["sample"])
    ReviewItem.objects.filter(pk=item.pk).update(status="done", verdict="correct")

    again = review_item_flag(message=message, reasons=["thumbs_down", "sample"])

    assert ReviewItem.objects.count() == 1 and again.pk == item.pk
    item.refresh_from_db()
    assert (item.reasons, item.status) == (["sample", "thumbs_down"], "open")


# --- Who may see the queue ----------------------------------------------------------------------


@pytest.fixture
def item(alice) -> ReviewItem:  # type: ignore[no-untyped-def]
    return review_item_flag(
        message=answered_turn(alice, decision="escalated"), reasons=["escalated"]
    )


@pytest.mark.parametrize("path", ["/review/", "/review/{id}/"])
def test_a_signed_out_visitor_is_sent_to_sign_in(client, item, path):
    response = client.get(path.format(id=item.id))

    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("persona", ["alice", "mallory"])
@pytest.mark.parametrize("path", ["/review/", "/review/{id}/"])
def test_end_users_get_the_same_404_as_for_a_missing_page(
    client, request, item, carol, persona, path
):
    client.force_login(carol)
    missing = client.get("/review/999999/")
    client.force_login(request.getfixturevalue(persona))

    response = client.get(path.format(id=item.id))

    assert response.status_code == 404 == missing.status_code
    assert response.content == missing.content


def test_an_end_user_cannot_resolve_or_promote_an_item(client, alice, item, cases_dir):
    client.force_login(alice)

    resolved = client.post(f"/review/{item.id}/resolve", {"verdict": "correct"})
    promoted = client.post(f"/review/{item.id}/promote", {"expect": "refused"})

    assert resolved.status_code == promoted.status_code == 404
    item.refresh_from_db()
    assert (item.status, item.verdict, item.promoted_case) == ("open", "", None)
    assert not cases_dir.exists()


@pytest.mark.parametrize("persona", ["carol", "bob"])
def test_reviewers_and_admins_see_the_queue_and_an_item(client, request, item, persona):
    client.force_login(request.getfixturevalue(persona))

    listing = client.get("/review/")
    detail = client.get(f"/review/{item.id}/")

    assert listing.status_code == 200 and f'data-item-id="{item.id}"' in listing.content.decode()
    assert detail.status_code == 200
    page = detail.content.decode()
    assert QUESTION in page and CLAIM in page and 'data-testid="review-trace"' in page


def test_the_queue_filters_by_reason_and_status(client, carol, alice):
    down = review_item_flag(message=answered_turn(alice), reasons=["thumbs_down"])
    sampled = review_item_flag(message=answered_turn(alice), reasons=["sample"])
    ReviewItem.objects.filter(pk=sampled.pk).update(status="done")
    client.force_login(carol)

    def listed(query: str) -> set[int]:
        page = client.get(f"/review/{query}").content.decode()
        return {i for i in (down.id, sampled.id) if f'data-item-id="{i}"' in page}

    assert listed("") == {down.id}  # open by default
    assert listed("?status=all") == {down.id, sampled.id}
    assert listed("?status=done") == {sampled.id}
    assert listed("?reason=sample&status=all") == {sampled.id}
    assert listed("?reason=thumbs_down&status=done") == set()


def test_the_detail_shows_the_retrieved_passages_with_their_stage_scores_and_the_trace(
    client, client_for, alice, carol, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(ok({"decision": "answer", "confidence": 0.35, "claims": [CLAIM_1]}))
    body = ask(client_for(alice))
    message = Message.objects.get(id=body["message"])
    client.force_login(carol)

    page = client.get(f"/review/{item_of(message.id).id}/").content.decode()

    passages = message.trace["passages"]
    assert passages and {"dense", "bm25", "fused"} <= set(passages[0]["scores"])
    assert sum(p["sent"] for p in passages) >= 1
    assert page.count('data-testid="review-passage"') == len(passages)
    assert "Resetting your password" in page and "dense" in page and "rerank" in page
    assert "retrieve_ms" in page  # the trace JSON
    assert f"/ops/traces/{message.trace_id}/" in page


# --- The reviewer's verdict and answer ----------------------------------------------------------


def test_a_corrected_answer_is_posted_to_the_users_conversation(
    client, client_for, alice, carol, item
):
    client.force_login(carol)

    response = client.post(
        f"/review/{item.id}/resolve",
        {"verdict": "incorrect", "corrected_answer": "Reset links last 30 minutes."},
    )

    assert response.status_code == 302 and response.url == f"/review/{item.id}/"
    item.refresh_from_db()
    assert (item.status, item.verdict, item.reviewer) == ("done", "incorrect", carol)
    assert item.reviewed_at is not None
    conversation = client_for(alice).get(f"/api/v1/conversations/{item.message.conversation_id}")
    last = conversation.json()["messages"][-1]
    assert (last["role"], last["text"], last["from_reviewer"]) == (
        "assistant",
        "Reset links last 30 minutes.",
        True,
    )
    assert conversation.json()["messages"][-2]["from_reviewer"] is False


def test_correcting_again_edits_the_posted_answer_instead_of_adding_one(client, carol, item):
    client.force_login(carol)
    url = f"/review/{item.id}/resolve"
    client.post(url, {"verdict": "incorrect", "corrected_answer": "First try."})

    client.post(url, {"verdict": "incorrect", "corrected_answer": "Second try."})

    replies = Message.objects.filter(from_reviewer=True)
    assert [m.text for m in replies] == ["Second try."]


def test_marking_correct_without_a_correction_posts_nothing(client, carol, item):
    client.force_login(carol)

    client.post(f"/review/{item.id}/resolve", {"verdict": "correct"})

    item.refresh_from_db()
    assert (item.status, item.verdict, item.reply) == ("done", "correct", None)
    assert not Message.objects.filter(from_reviewer=True).exists()


def test_a_reviewers_answer_is_not_shown_to_another_user_and_takes_no_feedback(
    client, client_for, alice, mallory, carol, item
):
    client.force_login(carol)
    client.post(f"/review/{item.id}/resolve", {"verdict": "incorrect", "corrected_answer": "X."})
    reply = Message.objects.get(from_reviewer=True)

    foreign = client_for(mallory).get(f"/api/v1/conversations/{item.message.conversation_id}")
    rated = client_for(alice).post(
        "/api/v1/feedback", {"message": reply.id, "rating": -1}, format="json"
    )

    assert foreign.status_code == 404 and rated.status_code == 404


# --- Promotion to the eval set ------------------------------------------------------------------


def test_promoting_writes_a_case_the_eval_loader_accepts(
    client, carol, item, cases_dir, corpus_document
):
    client.force_login(carol)

    response = client.post(
        f"/review/{item.id}/promote",
        {
            "expect": "answered",
            "source": "account-and-security.md",
            "evidence": "password reset links  expire after 30 minutes",
            "facts": "30 minutes\n",
        },
    )

    assert response.status_code == 302
    item.refresh_from_db()
    golden = golden_set_load(cases_dir)
    assert golden.versions == {"reviewed": 1}
    (case,) = golden.cases
    assert case.id == item.promoted_case_id and case.id.startswith("reviewed-")
    assert (case.category, case.question, case.expect) == ("reviewed", QUESTION, "answered")
    assert (case.source, case.evidence, case.facts) == (
        "account-and-security.md",
        "password reset links expire after 30 minutes",
        ("30 minutes",),
    )
    assert case.history == ("Tell me about passwords.",)
    assert f"review item {item.id}" in case.notes


def test_a_promoted_question_can_be_edited_and_loses_its_personal_data(
    client, carol, item, cases_dir
):
    client.force_login(carol)

    client.post(
        f"/review/{item.id}/promote",
        {"expect": "refused", "question": "Why was jane.doe@example.com charged twice?"},
    )

    (case,) = golden_set_load(cases_dir).cases
    assert case.question == "Why was [EMAIL] charged twice?"


def test_a_second_promotion_appends_to_the_same_file(client, carol, alice, cases_dir):
    other = review_item_flag(message=answered_turn(alice), reasons=["thumbs_down"])
    first = review_item_flag(message=answered_turn(alice), reasons=["thumbs_down"])
    client.force_login(carol)

    client.post(f"/review/{first.id}/promote", {"expect": "refused"})
    client.post(f"/review/{other.id}/promote", {"expect": "declined"})
    again = client.post(f"/review/{first.id}/promote", {"expect": "refused"})

    assert again.status_code == 400 and "Already promoted" in again.content.decode()
    golden = golden_set_load(cases_dir)
    assert [c.expect for c in golden.cases] == ["refused", "declined"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"source": "small-kb-0.md", "evidence": "30 minutes"}, "must be one of the eval corpus"),
        ({"source": "account-and-security.md", "evidence": "45 minutes"}, "No stored passage"),
        ({"source": "account-and-security.md", "evidence": ""}, "needs an evidence phrase"),
    ],
)
def test_an_answerable_case_needs_a_corpus_document_holding_its_evidence(
    client, carol, item, cases_dir, corpus_document, form, message
):
    client.force_login(carol)

    response = client.post(f"/review/{item.id}/promote", {"expect": "answered", **form})

    assert response.status_code == 400 and message in response.content.decode()
    item.refresh_from_db()
    assert item.promoted_case is None and not cases_dir.exists()


def test_the_export_command_writes_promoted_cases_from_the_database(
    client, carol, item, cases_dir, tmp_path
):
    client.force_login(carol)
    client.post(f"/review/{item.id}/promote", {"expect": "refused"})
    out = StringIO()

    call_command("eval_export_reviewed", "--dir", str(tmp_path / "repo"), stdout=out)
    call_command("eval_export_reviewed", "--dir", str(tmp_path / "repo"), stdout=out)

    lines = (tmp_path / "repo" / "reviewed.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"category": "reviewed", "version": 1}
    assert len(lines) == 2 and "1 new of 1" in out.getvalue() and "0 new of 1" in out.getvalue()
    item.refresh_from_db()
    assert golden_set_load(tmp_path / "repo").cases[0].id == item.promoted_case_id
