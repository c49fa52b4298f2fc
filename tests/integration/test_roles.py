from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from ragapp import roles
from ragapp.roles import user_is_reviewer

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_migrate_creates_the_three_roles_with_their_permissions():
    assert set(Group.objects.values_list("name", flat=True)) >= {"end user", "reviewer", "admin"}
    reviewer = set(
        Group.objects.get(name=roles.REVIEWER).permissions.values_list("codename", flat=True)
    )
    assert {"review_message", "view_message", "view_guardrailevent"} <= reviewer
    assert "delete_document" not in reviewer
    admin = set(Group.objects.get(name=roles.ADMIN).permissions.values_list("codename", flat=True))
    assert {"add_document", "delete_document", "review_message", "change_alert"} <= admin
    assert not Group.objects.get(name=roles.END_USER).permissions.exists()


def test_only_reviewers_and_admins_may_review(alice, bob, carol, mallory):
    assert user_is_reviewer(carol)
    assert user_is_reviewer(bob)
    assert not user_is_reviewer(alice)
    assert not user_is_reviewer(mallory)
