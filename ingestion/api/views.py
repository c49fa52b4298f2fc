"""REST API for documents: upload, list, status, delete. One view per operation.

Every caller reads only the documents of the collections they may read (a foreign document
answers 404 like a missing one); uploading and deleting also need the model permissions
(``ingestion.add_document``, ``ingestion.delete_document``: the admin role)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ingestion import selectors, services
from ingestion.models import Collection, Document


def document_out(document: Document) -> dict[str, Any]:
    return {
        "id": str(document.id),
        "title": document.title,
        "collection": document.collection.slug,
        "original_name": document.original_name,
        "content_type": document.content_type,
        "size_bytes": document.size_bytes,
        "status": document.status,
        "stage": document.stage,
        "progress": {
            "done": document.progress_done,
            "total": document.progress_total,
            "unit": document.progress_unit,
        },
        "stage_seconds": document.stage_seconds,
        "pages": document.page_count,
        "attempts": document.attempts,
        "parent": str(document.parent_id) if document.parent_id else None,
        "error": document.error,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
    }


def _upload_collection(slug: str, *, user: Any) -> Collection:
    """The collection to upload into: one the user may read; only admins create new ones."""
    if selectors.user_sees_all_collections(user):
        return services.collection_get_or_create(slug)
    return selectors.collection_get_visible(slug, user=user)


class DocumentListCreateApi(APIView):
    parser_classes = [MultiPartParser]
    permission_classes = [DjangoModelPermissions]  # reads: signed in; writes: the permission
    queryset = Document.objects.none()  # names the model whose permissions apply

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True)
        collection = serializers.SlugField(required=False)
        title = serializers.CharField(required=False, allow_blank=True, max_length=300)

    def get(self, request: Request) -> Response:
        return Response([document_out(d) for d in selectors.document_list(user=request.user)[:500]])

    @extend_schema(request={"multipart/form-data": InputSerializer})
    def post(self, request: Request) -> Response:
        """One or more files (repeat the `file` field). Over the count or size limits the whole
        request is refused before anything is stored. One file answers with one object; several
        with {"documents": [...]}."""
        uploads = request.FILES.getlist("file")
        services.upload_check_limits(sizes=[upload.size for upload in uploads])
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        collection = _upload_collection(
            data.validated_data.get("collection") or services.DEFAULT_COLLECTION,
            user=request.user,
        )
        results = []
        for upload in uploads:
            document, created = services.document_create(
                fh=upload,
                name=upload.name,
                collection=collection,
                user=request.user,
                title=data.validated_data.get("title", "") if len(uploads) == 1 else "",
            )
            results.append(
                {"id": str(document.id), "status": document.status, "duplicate": not created}
            )
        any_created = any(not r["duplicate"] for r in results)
        code = status.HTTP_201_CREATED if any_created else status.HTTP_200_OK
        if len(results) == 1:
            return Response(results[0], status=code)
        return Response({"documents": results}, status=code)


class DocumentDetailApi(APIView):
    permission_classes = [DjangoModelPermissions]
    queryset = Document.objects.none()

    def get(self, request: Request, document_id: str) -> Response:
        return Response(document_out(selectors.document_get(document_id, user=request.user)))

    def delete(self, request: Request, document_id: str) -> Response:
        services.document_delete(document=selectors.document_get(document_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)
