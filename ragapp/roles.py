"""The three roles, as Django groups kept in sync with their permissions after every migrate.

- ``end user``: chats and rates answers; no permissions beyond signing in (the default for
  accounts created without a group).
- ``reviewer``: works the review queue in the admin (needs ``is_staff``): reads conversations,
  answers, feedback and guardrail events and may review answers (``agent.review_message``).
- ``admin``: everything in the ragapp apps (documents, collections and grants, prompts, alerts,
  review), short of editing users, which stays with superusers.
"""

from __future__ import annotations

from typing import Any

END_USER = "end user"
REVIEWER = "reviewer"
ADMIN = "admin"

_REVIEWER_PERMISSIONS = [
    ("agent", "view_conversation"),
    ("agent", "view_message"),
    ("agent", "review_message"),
    ("agent", "view_feedback"),
    ("agent", "view_guardrailevent"),
    ("agent", "view_escalatedmessage"),
    ("agent", "change_escalatedmessage"),
]
_ADMIN_APPS = ["agent", "ingestion", "retrieval"]


def roles_sync(**_: Any) -> None:
    """Create the groups and give them their permissions (idempotent; runs after migrate)."""
    from django.contrib.auth.models import Group, Permission

    Group.objects.get_or_create(name=END_USER)
    reviewer, _ = Group.objects.get_or_create(name=REVIEWER)
    wanted = [
        p
        for app, codename in _REVIEWER_PERMISSIONS
        for p in Permission.objects.filter(content_type__app_label=app, codename=codename)
    ]
    reviewer.permissions.set(wanted)
    admin, _ = Group.objects.get_or_create(name=ADMIN)
    admin.permissions.set(Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS))


def user_is_reviewer(user: Any) -> bool:
    """Reviewers and admins may review answers."""
    return bool(user.is_authenticated and user.is_staff and user.has_perm("agent.review_message"))
