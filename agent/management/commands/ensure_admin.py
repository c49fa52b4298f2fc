from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from ragapp.env import env_str


class Command(BaseCommand):
    help = (
        "Create the admin account, or update it from RAGAPP_ADMIN_USERNAME/RAGAPP_ADMIN_PASSWORD. "
        "A generated password is printed once, when the account is created."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = env_str("RAGAPP_ADMIN_USERNAME", "admin")
        password = env_str("RAGAPP_ADMIN_PASSWORD")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None and not password:
            self.stdout.write(f"Admin account: {username} (password unchanged)")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        if user is None:
            user = User(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        shown = password if generated else "(from RAGAPP_ADMIN_PASSWORD)"
        self.stdout.write(self.style.SUCCESS(f"Admin account: {username} / password: {shown}"))
