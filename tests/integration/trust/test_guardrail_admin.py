"""The guardrail events page counts events per rule per day, of the events its filters select."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agent.models import GuardrailEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _events(rule: str, *, days_ago: int, n: int, stage: str = "input") -> None:
    when = timezone.now().replace(hour=12) - timedelta(days=days_ago)
    for _ in range(n):
        event = GuardrailEvent.objects.create(stage=stage, rule=rule, action="rejected")
        GuardrailEvent.objects.filter(id=event.id).update(created_at=when)


def _table(html: str) -> list[list[str]]:
    table = re.search(r'<table data-testid="guardrail-counts">(.*?)</table>', html, re.S)
    assert table, "no counts table"
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    ]


def test_the_guardrail_events_page_shows_counts_per_rule_per_day(bob):
    _events("rate_limit", days_ago=0, n=3)
    _events("rate_limit", days_ago=1, n=1)
    _events("prompt_injection", days_ago=1, n=2)
    _events("no_evidence", days_ago=0, n=1, stage="retrieval")
    client = Client()
    client.force_login(bob)
    today = timezone.now().date()
    yesterday = today - timedelta(days=1)
    rows = _table(client.get("/admin/agent/guardrailevent/").content.decode())
    assert rows == [
        ["rule", today.isoformat(), yesterday.isoformat(), "total"],
        ["rate_limit", "3", "1", "4"],
        ["prompt_injection", "0", "2", "2"],
        ["no_evidence", "1", "0", "1"],
    ]
    # The counts follow the list filters.
    filtered = _table(client.get("/admin/agent/guardrailevent/?stage=input").content.decode())
    assert [r[0] for r in filtered[1:]] == ["rate_limit", "prompt_injection"]


def test_a_reviewer_sees_the_counts_and_an_end_user_does_not_reach_the_page(carol, alice):
    _events("rate_limit", days_ago=0, n=2)
    reviewer = Client()
    reviewer.force_login(carol)
    assert ["rate_limit", "2", "2"] in _table(
        reviewer.get("/admin/agent/guardrailevent/").content.decode()
    )
    end_user = Client()
    end_user.force_login(alice)
    assert end_user.get("/admin/agent/guardrailevent/").status_code == 302
