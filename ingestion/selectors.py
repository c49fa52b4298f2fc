"""Reads of collections and documents, always through the caller's access: a collection or
document the caller may not read answers exactly like a missing one."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from ingestion.models import Collection, Document
from ragapp.errors import NotFound


def user_sees_all_collections(user: Any) -> bool:
    """Admins (superusers and the admin role) read every collection: they manage the documents
    in the admin anyway."""
    return bool(
        user is not None
        and user.is_authenticated
        and (user.is_superuser or user.has_perm("ingestion.view_document"))
    )


def collection_list_visible(user: Any) -> QuerySet[Collection]:
    """The collections ``user`` may read: granted to them or one of their groups, or public.
    ``user=None`` (or an anonymous user) is an anonymous visitor: public collections only."""
    if user_sees_all_collections(user):
        return Collection.objects.all()
    if user is None or not user.is_authenticated:
        return Collection.objects.filter(public=True)
    return Collection.objects.filter(
        Q(public=True) | Q(users=user) | Q(groups__in=user.groups.all())
    ).distinct()


def collection_ids_visible(user: Any) -> list[int]:
    """Ids of the collections ``user`` may read, in order (what retrieval filters by)."""
    return sorted(collection_list_visible(user).values_list("id", flat=True))


def collection_get_visible(slug: str, *, user: Any) -> Collection:
    collection = collection_list_visible(user).filter(slug=slug).first()
    if collection is None:
        raise NotFound("No such collection.")
    return collection


def document_list(*, user: Any) -> QuerySet[Document]:
    return (
        Document.objects.filter(collection__in=collection_list_visible(user))
        .select_related("collection")
        .order_by("-created_at")
    )


def document_get(document_id: Any, *, user: Any) -> Document:
    document = document_list(user=user).filter(id=document_id).first()
    if document is None:
        raise NotFound("No such document.")
    return document
