from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

from ragapp.tracing import tracing_setup  # noqa: E402  (needs the settings module set)

tracing_setup()  # before the application loads its middleware: the Django tracing adds one
application = get_wsgi_application()
