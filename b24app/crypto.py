"""Secrets at rest: Fernet-encrypted text fields with key rotation, and digests for tokens we only compare."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:  # DEBUG / tests without configured keys: derive one from SECRET_KEY
        derived = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest()).decode()
        keys = (derived,)
    return MultiFernet([Fernet(k.strip().encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt under the first key (after a new key was prepended to FIELD_ENCRYPTION_KEYS)."""
    return fernet().rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column the database only ever sees as Fernet ciphertext.

    Not indexable or searchable (encryption is non-deterministic).  Empty strings are stored as-is so
    "no secret" stays visible without decrypting.
    """

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return decrypt(value)
        except InvalidToken as exc:  # a key was dropped too early: fail loudly, never return ciphertext
            raise ValueError(f"cannot decrypt {self.model.__name__}.{self.name}: unknown key") from exc

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)


class EncryptedJSONField(EncryptedTextField):
    """A JSON document (provider credentials) stored encrypted."""

    def from_db_value(self, value, expression, connection):
        text = super().from_db_value(value, expression, connection)
        return json.loads(text) if text else {}

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value) if value else {}
        return value or {}

    def get_prep_value(self, value):
        if value in (None, {}, ""):
            return ""
        return encrypt(json.dumps(value, sort_keys=True))


def token_digest(token: str, key: str | None = None) -> str:
    """HMAC-SHA256 of a token we only need to compare (Bitrix24's application_token)."""
    key = key or settings.SECRET_KEY
    return hmac.new(key.encode(), b"b24sign.application_token:" + token.encode(), hashlib.sha256).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    """Constant-time check of a presented token against a stored digest (current and fallback keys)."""
    if not token or not digest:
        return False
    ok = False
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        ok |= hmac.compare_digest(token_digest(token, key), digest)
    return ok
