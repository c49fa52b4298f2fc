"""Prompt labels, a sticky canary rollout through the ask API, the production/canary comparison,
and the automatic rollback driven by real traffic against the loopback OpenAI-protocol server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

from agent.models import Alert, AnswerCache, Message, PromptLabel, PromptLabelMove
from agent.pipeline.prompt import canary_bucket, prompt_load
from agent.services import answer_question, feedback_give
from agent.services.prompts import prompt_canary_check, prompt_canary_promote, prompt_label_move
from ragapp.errors import InvalidInput
from tests.support.openai_server import obedient_answer, ok

pytestmark = [pytest.mark.integration]

PID = "grounded_answer"
QUESTIONS = [
    "How long is a password reset link valid?",
    "How many recovery codes do I get?",
    "How much does the Pro plan cost?",
    "Do offline edits sync?",
]
# Only grounded_answer@2 says this: the loopback server recognises the canary's requests by it.
CANARY_RULE = "Keep each sentence close to the wording of the passage it cites"
NO_CACHE = {"RAGAPP_CACHE_EXACT": False, "RAGAPP_CACHE_SEMANTIC": False}
# Latency on a test machine shared with other jobs is noise; the p95 rule is unit-tested.
CHECK = {"RAGAPP_CANARY_MIN_ANSWERS": 8, "RAGAPP_CANARY_MAX_P95_RATIO": 100.0, **NO_CACHE}


def ask(client, question: str, conversation: str | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"question": question, **({"conversation": conversation} if conversation else {})}
    response = client.post("/api/v1/ask", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()  # type: ignore[no-any-return]


def start_canary(percent: int, *, user=None) -> None:  # type: ignore[no-untyped-def]
    prompt_label_move(prompt_id=PID, name="production", version="1", user=user, reason="baseline")
    prompt_label_move(
        prompt_id=PID, name="canary", version="2", percent=percent, user=user, reason="try @2"
    )


def canary_refuses(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The canary version behaves worse: the model refuses every question it is asked with it."""
    if CANARY_RULE in messages[0]["content"]:
        return {"decision": "refuse", "confidence": 0.9, "claims": []}
    return obedient_answer(messages)


def traffic(user, conversations: int) -> list[Message]:  # type: ignore[no-untyped-def]
    """One question per new conversation through the answering service; the answers."""
    return [
        answer_question(user=user, question=QUESTIONS[n % len(QUESTIONS)]).message
        for n in range(conversations)
    ]


# --- labels ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_no_label_a_fresh_install_answers_with_the_configured_version(
    client_for, alice, small_kb
):
    body = ask(client_for(alice), QUESTIONS[0])

    expected = prompt_load("grounded_answer@1")
    assert (body["prompt_version"], body["prompt_hash"]) == ("grounded_answer@1", expected.hash)
    message = Message.objects.get(id=body["message"])
    assert message.trace["prompt"] == {
        "ref": "grounded_answer@1",
        "hash": expected.hash,
        "chosen": "production",
    }
    assert not PromptLabel.objects.exists()


@pytest.mark.django_db
def test_moving_the_production_label_changes_the_version_at_once_and_records_who_and_why(
    client_for, alice, bob, small_kb
):
    label = prompt_label_move(
        prompt_id=PID, name="production", version="2", user=bob, reason="evals green on @2"
    )

    body = ask(client_for(alice), QUESTIONS[0])

    assert body["prompt_version"] == "grounded_answer@2"
    assert body["prompt_hash"] == prompt_load("grounded_answer@2").hash
    move = PromptLabelMove.objects.get(label=label)
    assert (move.from_version, move.to_version, move.moved_by, move.reason) == (
        "",
        "2",
        bob,
        "evals green on @2",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "version", "percent", "code"),
    [
        ("production", "999", 0, "prompt_version_unknown"),
        ("production", "2", 10, "prompt_label_percent"),
        ("canary", "2", 101, "prompt_label_percent"),
        ("beta", "2", 0, "prompt_label_unknown"),
    ],
)
def test_a_label_cannot_point_at_a_missing_version_or_carry_a_wrong_percentage(
    bob, name, version, percent, code
):
    with pytest.raises(InvalidInput) as caught:
        prompt_label_move(
            prompt_id=PID, name=name, version=version, percent=percent, user=bob, reason="x"
        )
    assert caught.value.code == code
    assert not PromptLabel.objects.exists()


# --- canary rollout -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_canary_gets_its_share_of_conversations_and_each_keeps_its_version_across_turns(
    client_for, alice, bob, small_kb, settings
):
    settings.RAGAPP_RATE_ASK = "1000/min"  # 80 questions from one user, on purpose
    start_canary(30, user=bob)
    api = client_for(alice)

    first = [ask(api, QUESTIONS[n % 4]) for n in range(40)]

    for body in first:
        in_canary = canary_bucket(PID, body["conversation"]) < 30
        assert body["prompt_version"] == f"grounded_answer@{2 if in_canary else 1}"
    on_canary = {b["conversation"] for b in first if b["prompt_version"].endswith("@2")}
    assert 3 <= len(on_canary) <= 22  # 30% of 40 is 12; the spread is checked on 10,000 ids

    # The canary shrinks to 5%: conversations already on it keep it for their next turns.
    prompt_label_move(prompt_id=PID, name="canary", version="2", percent=5, user=bob, reason="x")
    for body in first:
        follow_up = ask(api, "And how do I get a new one?", conversation=body["conversation"])
        assert follow_up["prompt_version"] == body["prompt_version"]
        assert Message.objects.get(id=follow_up["message"]).trace["prompt"]["chosen"] == "pinned"

    # The canary is stopped: its conversations go back to production on their next turn.
    prompt_label_move(prompt_id=PID, name="canary", version="2", percent=0, user=bob, reason="x")
    for conversation in list(on_canary)[:3]:
        assert ask(api, QUESTIONS[1], conversation=conversation)["prompt_version"].endswith("@1")


@pytest.mark.django_db
def test_the_answer_cache_is_keyed_by_the_version_that_answered(client_for, alice, bob, small_kb):
    api = client_for(alice)
    prompt_label_move(prompt_id=PID, name="production", version="1", user=bob, reason="x")
    production = [ask(api, QUESTIONS[0]) for _ in range(2)]
    prompt_label_move(prompt_id=PID, name="canary", version="2", percent=100, user=bob, reason="x")
    canary = [ask(api, QUESTIONS[0]) for _ in range(2)]

    assert [(b["prompt_version"], b["cached"]) for b in production + canary] == [
        ("grounded_answer@1", None),
        ("grounded_answer@1", "exact"),
        ("grounded_answer@2", None),  # production's cached answer is not served to the canary
        ("grounded_answer@2", "exact"),
    ]
    assert sorted(AnswerCache.objects.values_list("prompt_version", flat=True)) == [
        "grounded_answer@1",
        "grounded_answer@2",
    ]


@pytest.mark.django_db
def test_promoting_the_canary_makes_it_production_and_stops_the_canary(bob):
    start_canary(20, user=bob)

    prompt_canary_promote(prompt_id=PID, user=bob, reason="two days healthy")

    labels = {lb.name: (lb.version, lb.percent) for lb in PromptLabel.objects.all()}
    assert labels == {"production": ("2", 0), "canary": ("2", 0)}
    assert PromptLabelMove.objects.filter(moved_by=bob).count() == 4


# --- comparison page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_comparison_page_shows_both_versions_side_by_side_to_staff_only(
    client, alice, bob, carol, small_kb, chain
):
    chain("gpt-4o", **NO_CACHE).default = ok(canary_refuses)
    start_canary(50, user=bob)
    answers = traffic(alice, 12)
    for message in answers[:4]:
        feedback_give(user=alice, message_id=message.id, rating=-1)
    url = reverse("admin:prompt-compare")

    client.force_login(alice)
    assert client.get(url).status_code == 302  # to the admin login: not staff
    client.force_login(carol)
    page = client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert "production @1" in html and "canary @2 (50%)" in html
    on_canary = sum(m.prompt_version == "2" for m in answers)
    table = html.split('id="prompt-compare"')[1].split("</table>")[0]
    answers_row = table.split('<th scope="row">answers</th>')[1].split("</tr>")[0]
    assert answers_row.count("<td>") == 2
    assert f"<td>{12 - on_canary}</td><td>{on_canary}</td>" in answers_row
    assert '<th scope="row">refusals</th><td>0.0%</td><td>100.0%</td>' in table


# --- automatic rollback ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_canary_that_refuses_more_is_rolled_back_with_a_recorded_move_and_an_alert(
    alice, bob, small_kb, chain
):
    server = chain("gpt-4o", **CHECK)
    server.default = ok(canary_refuses)
    start_canary(50, user=bob)
    answers = traffic(alice, 40)
    canary_conversation = next(m.conversation for m in answers if m.prompt_version == "2")
    assert {m.decision for m in answers if m.prompt_version == "2"} == {"refused"}
    assert {m.decision for m in answers if m.prompt_version == "1"} == {"answered"}

    verdict = prompt_canary_check()

    assert verdict.status == "rolled_back"
    assert verdict.reasons[0].startswith("refusal_rate 1.000 vs 0.000")
    canary = PromptLabel.objects.get(name="canary")
    assert (canary.version, canary.percent, canary.updated_by) == ("1", 0, None)
    move = canary.moves.first()
    assert (move.from_version, move.from_percent, move.to_percent, move.moved_by) == (
        "2",
        50,
        0,
        None,
    )
    assert move.reason.startswith("automatic rollback of @2: refusal_rate")
    alert = Alert.objects.get(kind="prompt.rollback")
    assert alert.key == "grounded_answer@2"
    assert alert.details["canary"]["refusal_rate"] == 1.0
    # The canary's conversations are answered by production from their next turn on.
    follow_up = answer_question(
        user=alice, question=QUESTIONS[0], conversation_id=canary_conversation.id
    )
    assert (follow_up.message.prompt_version, follow_up.message.decision) == ("1", "answered")
    # A second check finds no canary traffic and raises nothing more.
    assert prompt_canary_check().status == "off"
    assert Alert.objects.count() == 1


@pytest.mark.django_db
def test_a_canary_with_more_thumbs_down_is_rolled_back(alice, bob, small_kb, chain):
    chain("gpt-4o", **CHECK)
    start_canary(50, user=bob)
    answers = traffic(alice, 40)
    for message in answers:
        if message.prompt_version == "2":
            feedback_give(user=alice, message_id=message.id, rating=-1)

    verdict = prompt_canary_check()

    assert verdict.status == "rolled_back"
    assert [r.split(" ")[0] for r in verdict.reasons] == ["thumbs_down_rate"]
    assert PromptLabel.objects.get(name="canary").percent == 0


@pytest.mark.django_db
def test_a_healthy_canary_is_not_rolled_back(alice, bob, small_kb, chain):
    chain("gpt-4o", **CHECK)
    start_canary(50, user=bob)
    traffic(alice, 40)

    verdict = prompt_canary_check()

    assert verdict.status == "healthy", verdict.reasons
    assert PromptLabel.objects.get(name="canary").percent == 50
    assert PromptLabelMove.objects.filter(moved_by=None).count() == 0
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_below_the_minimum_sample_a_bad_canary_is_left_alone(alice, bob, small_kb, chain):
    server = chain("gpt-4o", RAGAPP_CANARY_MIN_ANSWERS=50, **NO_CACHE)
    server.default = ok(canary_refuses)
    start_canary(50, user=bob)
    traffic(alice, 10)

    out = call_command_output("prompt_canary_check")

    assert out.strip().endswith("grounded_answer: too_few")
    assert PromptLabel.objects.get(name="canary").percent == 50
    assert not Alert.objects.exists()


def call_command_output(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_celery_task_rolls_a_bad_canary_back_in_a_real_worker(worker, alice, bob):
    """The worker runs with the default limits (50 answers each), so the traffic is stored
    directly here: the real-traffic rollback is the test above."""
    from agent.models import Conversation
    from agent.tasks import canary_check
    from tests.conftest import wait_until

    start_canary(50, user=bob)
    conversation = Conversation.objects.create(user=alice, title="load")
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text="...",
            decision="refused" if version == "2" else "answered",
            prompt_id=PID,
            prompt_version=version,
            latency_ms=100,
        )
        for version in ("1", "2")
        for _ in range(50)
    )

    canary_check.delay()

    wait_until(lambda: PromptLabel.objects.get(name="canary").percent == 0, timeout=60)
    assert Alert.objects.get(kind="prompt.rollback").key == "grounded_answer@2"


@pytest.mark.django_db
def test_an_admin_moves_a_label_from_the_admin_with_a_reason_that_is_recorded(client, bob):
    client.force_login(bob)
    add = reverse("admin:agent_promptlabel_add")
    # The move history is an inline formset (read-only); the admin's form carries its counts.
    inline = {"moves-TOTAL_FORMS": "0", "moves-INITIAL_FORMS": "0"}
    form = {"prompt_id": PID, "name": "canary", "version": "2", "percent": "10", **inline}

    missing_reason = client.post(add, form)
    created = client.post(add, {**form, "reason": "first look at @2"})
    label = PromptLabel.objects.get()
    change = reverse("admin:agent_promptlabel_change", args=[label.id])
    [first_move] = label.moves.all()
    inline = {
        "moves-TOTAL_FORMS": "1",
        "moves-INITIAL_FORMS": "1",
        "moves-0-id": str(first_move.id),
        "moves-0-label": str(label.id),
    }
    moved = client.post(change, {"version": "2", "percent": "25", "reason": "looks fine", **inline})

    assert (
        missing_reason.status_code == 200
        and "reason" in missing_reason.context["adminform"].form.errors
    )
    assert created.status_code == moved.status_code == 302
    label.refresh_from_db()
    assert (label.version, label.percent, label.updated_by) == ("2", 25, bob)
    assert [(m.from_percent, m.to_percent, m.moved_by, m.reason) for m in label.moves.all()] == [
        (10, 25, bob, "looks fine"),
        (0, 10, bob, "first look at @2"),
    ]


def test_the_prompt_versions_temperature_is_sent_to_the_model(openai_server, tmp_path):
    from agent.providers.openai import OpenAIChatModel
    from agent.providers.protocols import ChatRequest, Passage

    source = (
        Path(__file__).resolve().parents[3] / "agent/prompts/grounded_answer@2.toml"
    ).read_text()
    (tmp_path / "grounded_answer@7.toml").write_text(
        source.replace('version = "2"', 'version = "7"').replace(
            "temperature = 0.0", "temperature = 0.3"
        )
    )
    prompt = prompt_load("grounded_answer@7", tmp_path)
    model = OpenAIChatModel(model="gpt-test", base_url=openai_server.url, api_key="sk-test")
    passage = Passage(1, 1, "Links expire after 30 minutes.", "Account", None, "", 0.9)

    model.generate(ChatRequest(question="How long?", passages=[passage], prompt=prompt))

    assert prompt.temperature == 0.3
    assert openai_server.requests[0].body["temperature"] == 0.3
