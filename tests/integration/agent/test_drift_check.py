"""The drift check: an alert raised past a threshold (and posted to a real loopback webhook),
none below it or on too few data, resolved when the metric is back; questions profiled once."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from agent.models import Alert, QuestionProfile
from agent.services.drift import drift_check
from agent.tasks import drift_check as drift_check_task
from tests.conftest import wait_until
from tests.integration.agent.test_alerts import webhook  # noqa: F401  (a fixture)
from tests.support.dashboard_data import turn

pytestmark = [pytest.mark.integration]


def _traffic(user, *, baseline: tuple[int, int], recent: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """(answers, refused) three days ago and an hour ago; answers only, so nothing to embed."""
    now = timezone.now()
    for when, (total, refused) in (
        (now - timedelta(days=3), baseline),
        (now - timedelta(hours=1), recent),
    ):
        for n in range(total):
            turn(user, when, decision="refused" if n < refused else "answered", ask=False)


@pytest.mark.django_db
def test_a_doubled_refusal_rate_raises_one_alert_that_reaches_the_webhook(
    settings,
    alice,
    webhook,  # noqa: F811
):
    url, received, _ = webhook
    settings.RAGAPP_ALERT_WEBHOOK_URL = url
    settings.RAGAPP_DRIFT_MIN_SAMPLE = 10
    _traffic(alice, baseline=(20, 2), recent=(10, 5))  # 10% -> 50%

    report = drift_check()
    drift_check()  # still open: not posted again

    assert [f.metric for f in report.figures if f.crossed] == ["refusal_rate"]
    assert [r["kind"] for r in received] == ["drift.refusal_rate"]
    posted = received[0]
    assert posted["key"] == "24h-vs-7d"
    assert posted["details"]["recent"] == 0.5
    assert posted["details"]["baseline"] == pytest.approx(0.1)
    assert posted["details"]["change"] == pytest.approx(5.0)
    assert "refusal rate 50.0% vs 10.0%" in posted["text"]
    alert = Alert.objects.get()
    assert (alert.kind, alert.webhook_status, alert.resolved_at) == (
        "drift.refusal_rate",
        "sent",
        None,
    )


@pytest.mark.django_db
def test_the_alert_is_resolved_when_the_rate_is_back_to_normal(settings, alice):
    settings.RAGAPP_DRIFT_MIN_SAMPLE = 10
    _traffic(alice, baseline=(20, 2), recent=(10, 5))
    drift_check()
    _traffic(alice, baseline=(0, 0), recent=(30, 0))  # recent: 5 of 40 refused, x1.25

    report = drift_check()

    assert not [f for f in report.figures if f.crossed]
    assert Alert.objects.get(kind="drift.refusal_rate").resolved_at is not None


@pytest.mark.django_db
def test_no_alert_below_the_thresholds(settings, alice, webhook):  # noqa: F811
    url, received, _ = webhook
    settings.RAGAPP_ALERT_WEBHOOK_URL = url
    settings.RAGAPP_DRIFT_MIN_SAMPLE = 10
    _traffic(alice, baseline=(20, 2), recent=(20, 3))  # 10% -> 15%: x1.5 < x2

    report = drift_check()

    figure = next(f for f in report.figures if f.metric == "refusal_rate")
    assert figure.enough_data and figure.change == pytest.approx(1.5)
    assert not figure.crossed
    assert received == [] and not Alert.objects.exists()


@pytest.mark.django_db
def test_no_alert_on_fewer_answers_than_the_minimum_sample(settings, alice, webhook):  # noqa: F811
    url, received, _ = webhook
    settings.RAGAPP_ALERT_WEBHOOK_URL = url
    settings.RAGAPP_DRIFT_MIN_SAMPLE = 10
    _traffic(alice, baseline=(20, 2), recent=(9, 9))  # every one refused, but only 9

    report = drift_check()

    figure = next(f for f in report.figures if f.metric == "refusal_rate")
    assert figure.recent == 1.0 and not figure.enough_data and not figure.crossed
    assert received == [] and not Alert.objects.exists()


@pytest.mark.django_db
def test_questions_are_profiled_once_with_their_best_match_and_language(small_kb, alice):
    when = timezone.now() - timedelta(hours=2)
    on_topic = turn(alice, when, question="How long is a password reset link valid?")
    off_topic = turn(alice, when, question="Which football club won the 1974 cup final?")
    german = turn(alice, when, question="Wie lange ist ein Link zum Zurücksetzen gültig?")

    drift_check()
    first = {
        p.message.conversation_id: p for p in QuestionProfile.objects.select_related("message")
    }
    drift_check()

    assert QuestionProfile.objects.count() == 3
    assert set(QuestionProfile.objects.values_list("created_at", flat=True)) == {
        p.created_at for p in first.values()
    }
    hit, miss = first[on_topic.conversation_id], first[off_topic.conversation_id]
    assert hit.best_match > 0.6 > miss.best_match
    assert (hit.language, miss.language) == ("en", "en")
    assert first[german.conversation_id].language == "de"


@pytest.mark.django_db
def test_the_command_prints_each_metric_and_its_state(settings, alice):
    settings.RAGAPP_DRIFT_MIN_SAMPLE = 10
    _traffic(alice, baseline=(20, 2), recent=(10, 5))
    out = StringIO()

    call_command("drift_check", stdout=out)

    lines = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert list(lines) == [
        "cost_per_answer",
        "refusal_rate",
        "p95_latency",
        "question_centroid",
        "no_match_share",
        "language_mix",
    ]
    assert lines["refusal_rate"].split()[1] == "ALERT"
    assert lines["question_centroid"].split()[1:3] == ["too", "few"]


def test_the_celery_task_runs_the_check_in_a_real_worker(worker, alice):
    # The worker runs with the default minimum sample (30 answers in each window).
    _traffic(alice, baseline=(40, 4), recent=(30, 15))

    drift_check_task.delay()

    alert = wait_until(lambda: Alert.objects.filter(kind="drift.refusal_rate").first(), timeout=60)
    assert alert.key == "24h-vs-7d"
