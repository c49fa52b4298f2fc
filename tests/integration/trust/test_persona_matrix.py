"""Every object endpoint and page, asked by the owner (alice), a reader of the same collection
with another role (carol, a reviewer granted through a group), an outsider (mallory, who reads
only another tenant's collection) and an anonymous caller. A foreign object answers exactly like
a missing one: the same status and the same body."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agent.models import Feedback
from agent.services import answer_question

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PERSONAS = ["alice", "carol", "mallory", "anonymous"]
MISSING = {"doc": str(uuid.uuid4()), "conv": str(uuid.uuid4()), "msg": 987654321}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    url: str
    body: dict[str, Any] | None
    expected: dict[str, int]  # persona -> status
    session: bool = False  # a page (session cookie) rather than the API (token)


CASES = [
    Case(
        "document detail",
        "get",
        "/api/v1/documents/{doc}",
        None,
        {"alice": 200, "carol": 200, "mallory": 404, "anonymous": 401},
    ),
    Case(
        "document delete",
        "delete",
        "/api/v1/documents/{doc}",
        None,
        {"alice": 403, "carol": 403, "mallory": 403, "anonymous": 401},
    ),
    Case(
        "source file download",
        "get",
        "/documents/{doc}/file",
        None,
        {"alice": 200, "carol": 200, "mallory": 404, "anonymous": 302},
        session=True,
    ),
    Case(
        "conversation detail",
        "get",
        "/api/v1/conversations/{conv}",
        None,
        {"alice": 200, "carol": 404, "mallory": 404, "anonymous": 401},
    ),
    Case(
        "feedback on an answer",
        "post",
        "/api/v1/feedback",
        {"message": "{msg}", "rating": -1},
        {"alice": 201, "carol": 404, "mallory": 404, "anonymous": 401},
    ),
    Case(
        "ask in a collection",
        "post",
        "/api/v1/ask",
        {"question": "How fast are annual plans refunded?", "collection": "{coll}"},
        {"alice": 200, "carol": 200, "mallory": 404, "anonymous": 401},
    ),
    Case(
        "ask in a conversation",
        "post",
        "/api/v1/ask",
        {"question": "And monthly plans?", "conversation": "{conv}"},
        {"alice": 200, "carol": 404, "mallory": 404, "anonymous": 401},
    ),
    Case(
        "usage rollup (staff only)",
        "get",
        "/api/v1/usage",
        None,
        {"alice": 403, "carol": 200, "mallory": 403, "anonymous": 401},
    ),
    Case(
        "conversation in the admin",
        "get",
        "/admin/agent/conversation/{conv}/change/",
        None,
        {"alice": 302, "carol": 200, "mallory": 302, "anonymous": 302},
        session=True,
    ),
    Case(
        "document in the admin",
        "get",
        "/admin/ingestion/document/{doc}/change/",
        None,
        {"alice": 302, "carol": 403, "mallory": 302, "anonymous": 302},
        session=True,
    ),
]


@pytest.fixture
def world(tenants, alice, carol, mallory):  # type: ignore[no-untyped-def]
    """alice's conversation with an answer she rated, in the acme collection."""
    outcome = answer_question(user=alice, question="How fast are annual plans refunded?")
    assert outcome.message.decision == "answered", outcome.message.text
    Feedback.objects.create(message=outcome.message, user=alice, rating=1)
    users = {"alice": alice, "carol": carol, "mallory": mallory, "anonymous": None}
    ids = {
        "doc": str(tenants.acme_doc.id),
        "conv": str(outcome.conversation.id),
        "msg": outcome.message.id,
        "coll": "acme",
    }
    return users, ids


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]  # keeps an id's type (a message id is a number)
    return value.format(**ids) if isinstance(value, str) else value


def send(case: Case, user, ids: dict[str, Any]):  # type: ignore[no-untyped-def]
    url, body = _fill(case.url, ids), _fill(case.body, ids)
    if case.session:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client.generic(case.method.upper(), url) if body is None else None
    client = APIClient()
    if user is not None:
        client.credentials(
            HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}"
        )
    return getattr(client, case.method)(url, body, format="json")


def _body(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_persona_gets_what_the_matrix_says_and_foreign_is_missing(case, world):
    users, ids = world
    missing = {**ids, **MISSING, "coll": "no-such-collection"}
    for persona in PERSONAS:
        response = send(case, users[persona], ids)
        assert response.status_code == case.expected[persona], (persona, _body(response)[:300])
        if case.expected[persona] in (403, 404):
            absent = send(case, users[persona], missing)
            assert (absent.status_code, _body(absent)) == (response.status_code, _body(response)), (
                persona
            )
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "not_authenticated"


def test_lists_show_each_persona_only_what_they_may_read(world, tenants, bob):
    users, ids = world
    users = {**users, "bob": bob}
    seen = {}
    for persona, user in users.items():
        client = APIClient()
        if user is not None:
            key = Token.objects.get_or_create(user=user)[0].key
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        documents = client.get("/api/v1/documents")
        conversations = client.get("/api/v1/conversations")
        if user is None:
            assert (documents.status_code, conversations.status_code) == (401, 401)
            continue
        seen[persona] = (
            {d["collection"] for d in documents.json()},
            {c["id"] for c in conversations.json()},
        )
    assert seen["alice"] == ({"acme"}, {ids["conv"]})
    assert seen["carol"] == ({"acme"}, set())
    assert seen["mallory"] == ({"globex"}, set())
    assert seen["bob"] == ({"acme", "globex"}, set())  # admins read every collection


def test_an_end_user_cannot_upload_into_a_collection_and_an_admin_can(
    tenants, alice, bob, client_for
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(user, collection):  # type: ignore[no-untyped-def]
        fh = SimpleUploadedFile("note.txt", b"Acme opens at nine.", content_type="text/plain")
        return client_for(user).post(
            "/api/v1/documents", {"file": fh, "collection": collection}, format="multipart"
        )

    assert upload(alice, "acme").status_code == 403
    assert upload(bob, "acme").status_code == 201
