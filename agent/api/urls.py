from __future__ import annotations

from django.urls import path

from agent.api import views

urlpatterns = [
    path("ask", views.AskApi.as_view(), name="api-ask"),
    path("conversations", views.ConversationListApi.as_view(), name="api-conversations"),
    path(
        "conversations/<uuid:conversation_id>",
        views.ConversationDetailApi.as_view(),
        name="api-conversation",
    ),
    path("feedback", views.FeedbackCreateApi.as_view(), name="api-feedback"),
    path("usage", views.UsageRollupApi.as_view(), name="api-usage"),
]
