"""The reviewers' pages, under /review/."""

from __future__ import annotations

from django.urls import path

from agent import views

urlpatterns = [
    path("", views.review_list, name="review-list"),
    path("<int:item_id>/", views.review_detail, name="review-detail"),
    path("<int:item_id>/resolve", views.review_resolve, name="review-resolve"),
    path("<int:item_id>/promote", views.review_promote, name="review-promote"),
]
