"""The Celery app's queues, beat schedule and worker command line, read from its configuration."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from ragapp.celery import app, worker_command


def test_each_queue_is_bound_by_its_own_name_so_a_message_lands_in_one_queue_only():
    queues = app.amqp.queues
    names = {"celery", settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED}
    assert names <= set(queues)
    assert {name: queues[name].routing_key for name in names} == {name: name for name in names}


def test_beat_schedules_only_tasks_that_exist_and_the_sweep_every_sweep_interval():
    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert schedule["ingestion.sweep"]["schedule"] == settings.RAGAPP_INGEST_SWEEP_EVERY_S
    assert set(schedule) == {n for n, every in settings.RAGAPP_PERIODIC_TASKS.items() if every > 0}
    assert all(entry["task"] in app.tasks for entry in schedule.values())


def test_the_worker_command_consumes_every_queue_unless_told_and_can_run_beat_inside():
    plain = worker_command(hostname="w@%h")
    assert plain[plain.index("-m") + 1 :][:4] == ["celery", "-A", "ragapp", "worker"]
    assert "-Q" not in plain and "-B" not in plain
    split = worker_command(hostname="w@%h", queues=["parse"], beat_schedule=Path("/tmp/s"))
    assert split[split.index("-Q") + 1] == "parse"
    assert "-B" in split and "--schedule=/tmp/s" in split
