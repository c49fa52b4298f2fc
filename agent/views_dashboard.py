"""The operations dashboard (``/ops/dashboard/``): staff only, one page with cost, quality,
reliability and input drift. Figures come from ``agent.selectors_dashboard``; the charts are drawn
by static/ops/dashboard.js from a JSON data block (the CSP allows no inline script)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agent.selectors_dashboard import dashboard_get

WINDOWS = (7, 30, 90)  # days the page offers
DEFAULT_WINDOW = 30


@staff_member_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """Cost, quality, reliability and drift over the last ``?days=`` (7, 30 or 90) days."""
    raw = request.GET.get("days", "")
    days = int(raw) if raw.isdigit() and int(raw) in WINDOWS else DEFAULT_WINDOW
    context = {**dashboard_get(days=days), "windows": WINDOWS}
    return render(request, "ops/dashboard.html", context)
