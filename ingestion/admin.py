from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpRequest
from django.utils.html import format_html

from ingestion import services
from ingestion.models import Chunk, Collection, Document


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    """Who may read a collection: the users and groups granted here, everyone signed in when it
    is public; admins always."""

    list_display = ["name", "slug", "public", "document_count", "created_at"]
    list_filter = ["public"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "public", "users", "groups"]
    filter_horizontal = ["users", "groups"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(n_docs=Count("documents"))

    @admin.display(ordering="n_docs", description="documents")
    def document_count(self, obj: Collection) -> int:
        return obj.n_docs  # type: ignore[attr-defined, no-any-return]


class DocumentUploadForm(forms.ModelForm):
    title = forms.CharField(required=False, help_text="Leave empty to use the title in the file.")

    class Meta:
        model = Document
        fields = ["collection", "file", "title"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "collection",
        "status",
        "progress",
        "error",
        "chunk_count",
        "flagged_count",
        "timings",
        "created_at",
    ]
    list_filter = ["status", "collection", "content_type"]
    search_fields = ["title", "original_name", "content_hash"]
    actions = ["reingest"]
    readonly_fields = [
        "id",
        "original_name",
        "content_type",
        "size_bytes",
        "content_hash",
        "status",
        "stage",
        "progress_done",
        "progress_total",
        "error",
        "attempts",
        "page_count",
        "stage_seconds",
        "parent",
        "uploaded_by",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        if obj is None:
            kwargs["form"] = DocumentUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):  # type: ignore[no-untyped-def]
        if obj is None:
            return ["collection", "file", "title"]
        return ["title", "collection", *self.readonly_fields]

    class Media:
        # Reloads the list every few seconds while a document is still queued or processing.
        js = ["ingestion/admin_progress.js"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_chunks=Count("chunks", distinct=True),
                n_flagged=Count("chunks", filter=Q(chunks__flagged=True), distinct=True),
            )
        )

    @admin.display(ordering="n_chunks", description="chunks")
    def chunk_count(self, obj: Document) -> int:
        return obj.n_chunks  # type: ignore[attr-defined, no-any-return]

    @admin.display(ordering="n_flagged", description="flagged")
    def flagged_count(self, obj: Document) -> int:
        return obj.n_flagged  # type: ignore[attr-defined, no-any-return]

    @admin.display(description="seconds per stage")
    def timings(self, obj: Document) -> str:
        return " ".join(f"{stage} {seconds:.1f}" for stage, seconds in obj.stage_seconds.items())

    @admin.display(description="progress")
    def progress(self, obj: Document) -> str:
        live = obj.status in (Document.Status.QUEUED, Document.Status.PROCESSING)
        if obj.progress_total:
            return format_html(
                '<progress max="{}" value="{}" data-live="{}"></progress> {} {}/{} {}',
                obj.progress_total,
                obj.progress_done,
                "1" if live else "",
                obj.stage,
                obj.progress_done,
                obj.progress_total,
                obj.progress_unit,
            )
        return format_html('<span data-live="{}">{}</span>', "1" if live else "", obj.stage)

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        upload = form.cleaned_data["file"]
        document, created = services.document_create(
            fh=upload,
            name=upload.name,
            collection=form.cleaned_data["collection"],
            user=request.user,
            title=form.cleaned_data.get("title") or "",
        )
        obj.pk = document.pk  # so the admin redirects to the stored document
        if not created:
            messages.warning(request, f"Identical content is already stored as “{document.title}”.")

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for document in queryset:
            services.document_delete(document=document)

    @admin.action(description="Re-ingest selected documents")
    def reingest(self, request: HttpRequest, queryset: Any) -> None:
        for document in queryset:
            services.document_reingest(document=document)
        messages.success(request, f"Queued {queryset.count()} document(s) for ingestion.")


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = [
        "document",
        "index",
        "page",
        "heading",
        "token_count",
        "flagged",
        "flag_reason",
        "embedding_model",
    ]
    list_filter = ["flagged", "embedding_model", "document__collection"]
    list_display_links = ["document", "index"]
    search_fields = ["text", "heading", "document__title"]
    list_select_related = ["document"]
    exclude = ["embedding"]
    readonly_fields = [
        "document",
        "index",
        "text",
        "page",
        "heading",
        "token_count",
        "embedding_model",
        "flagged",
        "flag_reason",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
