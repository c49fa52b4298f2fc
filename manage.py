#!/usr/bin/env python
from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")
    if sys.argv[1:2] == ["eval"]:
        # The eval's database is dropped when it ends: stored spans would have nowhere to go.
        os.environ.setdefault("RAGAPP_TRACE_STORE", "0")
    from django.core.management import execute_from_command_line

    from ragapp.tracing import tracing_setup

    tracing_setup()  # commands that answer or ingest (eval, ingest_sample) are traced too
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
