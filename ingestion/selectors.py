from __future__ import annotations

from django.db.models import QuerySet

from ingestion.models import Document
from ragapp.errors import NotFound


def document_list() -> QuerySet[Document]:
    return Document.objects.select_related("collection").order_by("-created_at")


def document_get(document_id) -> Document:  # type: ignore[no-untyped-def]
    document = Document.objects.filter(id=document_id).select_related("collection").first()
    if document is None:
        raise NotFound("No such document.")
    return document
