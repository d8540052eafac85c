"""Secrets at rest, key rotation, and production settings."""
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from b24app.crypto import InvalidToken, _fernet, decrypt, encrypt, fernet, rotate


@pytest.mark.django_db
def test_secrets_written_before_v2_still_open_and_rotation_rewrites_them(portal_a):
    legacy = fernet().encrypt(b"old access token").decode()  # what a Fernet-era row holds
    with connection.cursor() as cur:
        cur.execute("UPDATE b24app_portal SET access_token = %s WHERE id = %s", [legacy, portal_a.db.pk])
    portal_a.db.refresh_from_db()
    assert portal_a.db.access_token == "old access token"
    call_command("rotate_encryption", stdout=open(os.devnull, "w"))
    with connection.cursor() as cur:
        cur.execute("SELECT access_token FROM b24app_portal WHERE id = %s", [portal_a.db.pk])
        stored = cur.fetchone()[0]
    assert stored.startswith("v2.") and "old access token" not in stored
    assert decrypt(stored) == "old access token" and rotate(legacy).startswith("v2.")


def test_a_sealed_value_is_unreadable_and_an_altered_one_never_opens():
    sealed = encrypt("refresh-token-123")
    assert "refresh-token-123" not in sealed and sealed != encrypt("refresh-token-123")  # a nonce per value
    version, key_id, body = sealed.split(".", 2)
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    for forged in (f"{version}.{key_id}.{flipped}", f"{version}.00000000.{body}", f"{version}.{key_id}.",
                   f"{version}.{key_id}.@@@", "v2.", "v2.x"):
        with pytest.raises(InvalidToken):
            decrypt(forged)


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
    assert "hunter2" not in credentials and credentials.startswith("v2.")
    assert secret.startswith("v2.")
