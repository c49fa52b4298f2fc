from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest

from ingestion.models import Document


@login_required
def document_file(request: HttpRequest, document_id: str) -> FileResponse:
    """The stored source file, as an attachment (never rendered inline by the browser)."""
    document = Document.objects.filter(id=document_id).first()
    if document is None or not document.file:
        raise Http404("No such document.")
    response = FileResponse(
        document.file.open("rb"), as_attachment=True, filename=document.original_name
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
