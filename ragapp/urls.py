from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agent.views import chat_page
from agent.views_dashboard import dashboard_page
from ingestion.views import document_file
from ragapp.health import healthz, readyz
from ragapp.metrics import metrics_view
from ragapp.views import trace_detail

api_v1 = [
    path("", include("agent.api.urls")),
    path("", include("ingestion.api.urls")),
]

urlpatterns = [
    path("", chat_page, name="chat"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("review/", include("agent.urls")),
    path("documents/<uuid:document_id>/file", document_file, name="document-file"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file, so the page works under our CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Operations pages for staff.
    path("ops/dashboard/", dashboard_page, name="ops-dashboard"),
    re_path(r"^ops/traces/(?P<trace_id>[0-9a-f]{32})/$", trace_detail, name="trace-detail"),
]
