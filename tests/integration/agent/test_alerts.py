from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.models import Alert
from agent.services.alerts import alert_raise, alert_resolve

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def webhook():
    """A real HTTP server on loopback that records what it is sent and answers ``status``."""
    received: list[dict] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received, state
    server.shutdown()


def test_an_alert_is_stored_and_posted_to_the_webhook_once_while_open(settings, webhook):
    url, received, _ = webhook
    settings.RAGAPP_ALERT_WEBHOOK_URL = url

    first = alert_raise(kind="drift.refusal_rate", key="7d", message="refusal rate x2.4")
    again = alert_raise(kind="drift.refusal_rate", key="7d", message="refusal rate x2.5")

    assert again.id == first.id
    assert first.webhook_status == "sent"
    assert [r["kind"] for r in received] == ["drift.refusal_rate"]
    assert received[0]["text"] == "[ragapp] drift.refusal_rate: refusal rate x2.4"

    assert alert_resolve(kind="drift.refusal_rate", key="7d") == 1
    alert_raise(kind="drift.refusal_rate", key="7d", message="back again")
    assert len(received) == 2
    assert Alert.objects.count() == 2


def test_a_failing_webhook_is_recorded_on_the_alert_and_does_not_raise(settings, webhook):
    url, _, state = webhook
    state["status"] = 500
    settings.RAGAPP_ALERT_WEBHOOK_URL = url

    alert = alert_raise(kind="prompt.rollback", message="canary rolled back")

    assert alert.webhook_status.startswith("failed: ")
    assert Alert.objects.get().kind == "prompt.rollback"


def test_without_a_webhook_the_alert_is_only_stored(settings):
    settings.RAGAPP_ALERT_WEBHOOK_URL = ""
    alert = alert_raise(kind="drift.p95", message="p95 +40%")
    assert alert.webhook_status == ""
