"""Secrets at rest: encrypted text fields with key rotation, and digests for tokens we only compare.

Values are sealed with AES-256-GCM: ``v2.<key id>.<base64url(nonce | ciphertext | tag)>``.  The keys are
FIELD_ENCRYPTION_KEYS (Fernet keys, first one current), each stretched to an AES key of its own.  Tokens
written before v2 are Fernet tokens (``gAAAAA…``) and still open; ``rotate`` (and the rotate_encryption
command) rewrites anything under the first key in v2.  Why not Fernet for new values: the robot handler
encrypts two tokens per call, and Fernet's CBC + HMAC construction cost a tenth of the handler's CPU
(bench/handler.py; docs/decisions.md).  A random 96-bit nonce per value is safe for 2^32 values per key:
rotate keys well before a key has sealed billions of values.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import models

V2 = "v2."
NONCE_BYTES = 12


def _keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    if not keys:  # DEBUG / tests without configured keys: derive one from SECRET_KEY
        return (base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest()).decode(),)
    return tuple(k.strip() for k in keys)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in _keys(keys)])


@lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> tuple[tuple[str, AESGCM], dict[str, AESGCM]]:
    """(the current key's id and cipher, every cipher by key id)."""
    ring = {}
    for key in _keys(keys):
        material = base64.urlsafe_b64decode(key.encode())
        key_id = hashlib.sha256(b"b24sign.field-key.id:" + material).hexdigest()[:8]
        ring.setdefault(key_id, AESGCM(hashlib.sha256(b"b24sign.field-key.v2:" + material).digest()))
    current = next(iter(ring.items()))
    return current, ring


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    (key_id, cipher), _ = _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))
    nonce = os.urandom(NONCE_BYTES)
    sealed = base64.urlsafe_b64encode(nonce + cipher.encrypt(nonce, value.encode(), None)).decode()
    return f"{V2}{key_id}.{sealed}"


def decrypt(token: str) -> str:
    """The value of a v2 or a Fernet token; InvalidToken when no key opens it (or it was altered)."""
    if not token.startswith(V2):
        return fernet().decrypt(token.encode()).decode()
    _, ring = _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))
    _, key_id, sealed = (token.split(".", 2) + ["", ""])[:3]
    cipher = ring.get(key_id)
    if cipher is None:
        raise InvalidToken
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise InvalidToken from exc


def rotate(token: str) -> str:
    """Re-encrypt under the first key (after a new key was prepended to FIELD_ENCRYPTION_KEYS)."""
    return encrypt(decrypt(token))


class EncryptedTextField(models.TextField):
    """A text column the database only ever sees as ciphertext (v2, or Fernet for values written before).

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
    return hmac.digest(key.encode(), b"b24sign.application_token:" + token.encode(), "sha256").hex()  # one C call


def token_matches(token: str, digest: str) -> bool:
    """Constant-time check of a presented token against a stored digest (current and fallback keys)."""
    if not token or not digest:
        return False
    ok = False
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        ok |= hmac.compare_digest(token_digest(token, key), digest)
    return ok
