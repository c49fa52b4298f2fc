from __future__ import annotations

from django.urls import path

from ingestion.api import views

urlpatterns = [
    path("documents", views.DocumentListCreateApi.as_view(), name="api-documents"),
    path("documents/<uuid:document_id>", views.DocumentDetailApi.as_view(), name="api-document"),
]
