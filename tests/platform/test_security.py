"""Secrets at rest, key rotation, and production settings."""
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from b24app.crypto import _fernet


@pytest.mark.django_db
def test_key_rotation_reencrypts_and_old_key_can_then_go(portal_a, settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    token = portal_a.db.access_token
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    _fernet.cache_clear()
    call_command("rotate_encryption", stdout=open(os.devnull, "w"))

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # old key dropped
    _fernet.cache_clear()
    assert portal_a.db.access_token == token
    settings.FIELD_ENCRYPTION_KEYS = [old_key]  # and the old key alone no longer opens it
    _fernet.cache_clear()
    with pytest.raises(ValueError):
        portal_a.db.access_token
    _fernet.cache_clear()


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items()}
    env.update({"DEBUG": "0", "SECRET_KEY": "x7" * 30 + "Qz!9", "ALLOWED_HOSTS": "b24sign.example.com",
                "APP_BASE_URL": "https://b24sign.example.com", "ALLOW_HTTP_PORTALS": "0", "FETCH_PRIVATE_HOSTS": "",
                "SECURE_SSL_REDIRECT": "1", "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "B24SIGN_ENV_FILE": "/nonexistent", "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db")})
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_refuses_test_only_switches(tmp_path):
    env = {k: v for k, v in os.environ.items()}
    env.update({"DEBUG": "0", "SECRET_KEY": "x7" * 30 + "Qz!9", "ALLOW_HTTP_PORTALS": "1",
                "FETCH_PRIVATE_HOSTS": "127.0.0.1", "FIELD_ENCRYPTION_KEYS": "", "B24SIGN_ENV_FILE": "/nonexistent",
                "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db")})
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], env=env, capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "b24sign.E001" in result.stderr + result.stdout and "b24sign.E002" in result.stderr + result.stdout
    assert "b24sign.E003" in result.stderr + result.stdout


@pytest.mark.django_db
def test_secrets_never_reach_the_database_in_clear(portal_a):
    from signing.models import ProviderAccount

    ProviderAccount.objects.create(portal=portal_a.db, provider="signnow",
                                   credentials={"password": "hunter2-very-secret"})
    with connection.cursor() as cur:
        cur.execute("SELECT credentials, webhook_secret FROM signing_provideraccount")
        credentials, secret = cur.fetchone()
    assert "hunter2" not in credentials and credentials.startswith("gAAAA")
    assert secret.startswith("gAAAA")
