"""Anonymous chat (RAGAPP_ANONYMOUS_CHAT): off by default; when on, anonymous visitors ask the
public collections only, in conversations tied to their session."""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from agent.models import Conversation
from tests.integration.trust.conftest import leaked

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How fast are monthly plans refunded?"


def ask(client, **body):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/ask", body, format="json")


def test_with_anonymous_chat_off_visitors_must_sign_in_everywhere(tenants):
    tenants.globex.public = True
    tenants.globex.save()
    visitor = APIClient()
    for response in (
        ask(visitor, question=QUESTION),
        visitor.get("/api/v1/conversations"),
        visitor.get(f"/api/v1/documents/{tenants.globex_doc.id}"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
    page = Client().get("/")
    assert page.status_code == 302 and page.url.startswith("/accounts/login/")
    download = Client().get(f"/documents/{tenants.globex_doc.id}/file")
    assert download.status_code == 302
    assert not Conversation.objects.exists()


@override_settings(RAGAPP_ANONYMOUS_CHAT=True)
def test_with_anonymous_chat_on_visitors_ask_public_collections_in_their_own_session(
    tenants, alice
):
    tenants.globex.public = True
    tenants.globex.save()
    visitor = APIClient()
    first = ask(visitor, question=QUESTION)
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["decision"] == "answered" and "3 calendar days" in body["answer"]
    assert {c["document"]["id"] for c in body["citations"]} == {str(tenants.globex_doc.id)}
    conversation = Conversation.objects.get(id=body["conversation"])
    assert conversation.user is None and conversation.session_key
    # A follow-up in the same session continues the conversation.
    follow_up = ask(visitor, question="And annual plans?", conversation=body["conversation"])
    assert follow_up.status_code == 200
    assert follow_up.json()["conversation"] == body["conversation"]
    listed = visitor.get("/api/v1/conversations").json()
    assert [c["id"] for c in listed] == [body["conversation"]]
    # Another visitor, and a signed-in user, see that conversation exactly like a missing one.
    stranger = APIClient()
    url = f"/api/v1/conversations/{body['conversation']}"
    missing = "/api/v1/conversations/00000000-0000-0000-0000-000000000000"
    assert stranger.get(url).status_code == 404
    assert stranger.get(url).content == stranger.get(missing).content
    assert stranger.get("/api/v1/conversations").json() == []
    alice_client = Client()
    alice_client.force_login(alice)
    assert alice_client.get(url).status_code == 404
    # Private collections stay closed: asked for, one answers like a missing collection...
    private = ask(visitor, question=QUESTION, collection="acme")
    assert private.status_code == 404
    assert private.content == ask(visitor, question=QUESTION, collection="nope").content
    # ...and quoting their canary retrieves nothing from them.
    quoted = ask(visitor, question="What does internal reference ACMECANARY7F3A say?")
    assert not leaked(json.dumps(quoted.json()), "acme")
    # Feedback needs an account, and the public collection's source files are downloadable.
    feedback = visitor.post(
        "/api/v1/feedback", {"message": body["message"], "rating": 1}, format="json"
    )
    assert feedback.status_code == 401
    download = Client().get(f"/documents/{tenants.globex_doc.id}/file")
    assert download.status_code == 200
    assert Client().get(f"/documents/{tenants.acme_doc.id}/file").status_code == 404


@override_settings(RAGAPP_ANONYMOUS_CHAT=True)
def test_with_anonymous_chat_on_the_chat_page_opens_without_feedback_buttons(tenants):
    page = Client().get("/")
    assert page.status_code == 200
    assert 'data-feedback-url=""' in page.content.decode()


@override_settings(RAGAPP_ANONYMOUS_CHAT=True)
def test_with_no_public_collection_an_anonymous_question_finds_nothing(tenants):
    body = ask(APIClient(), question=QUESTION).json()
    assert body["decision"] == "refused" and body["citations"] == []
    assert not leaked(body["answer"], "acme") and not leaked(body["answer"], "globex")
