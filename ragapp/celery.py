from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

app = Celery("ragapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _tune_sqlalchemy_broker(sender: Celery, **kwargs: object) -> None:
    """The embedded default's broker is a table in PostgreSQL, polled by the worker.

    kombu polls every second by default; the interval is set on the transport class because
    passing it through ``broker_transport_options`` crashed the worker (see FIELD-NOTES).
    """
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("sqla+"):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = settings.CELERY_SQLA_POLLING_INTERVAL
