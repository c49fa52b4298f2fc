from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from ingestion import selectors
from ragapp.errors import NotFound


def document_file(request: HttpRequest, document_id: str) -> HttpResponse:
    """The stored source file, as an attachment (never rendered inline by the browser), for a
    reader of its collection; anyone else gets the 404 of a missing document. Anonymous
    visitors sign in first, unless anonymous chat is on (then public collections' files)."""
    if not request.user.is_authenticated and not settings.RAGAPP_ANONYMOUS_CHAT:
        return redirect_to_login(request.get_full_path())
    try:
        document = selectors.document_get(document_id, user=request.user)
    except NotFound:
        raise Http404("No such document.") from None
    if not document.file:
        raise Http404("No such document.")
    response = FileResponse(
        document.file.open("rb"), as_attachment=True, filename=document.original_name
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
