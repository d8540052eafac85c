"""Evia Sign (Enadoc) API v2 emulator (``EVIA_API_BASE``), following /work/shared/specs/esign-providers.md §2
and the seed ``evia-sign-add-signatory.txt`` -- not any product code.

``emu.base_url`` is the host root; every path keeps its documented ``/_apis/...`` prefix:

* ``GET  /_apis/falcon/auth/oauth2/authorize?application_state=external&resource=RESOURCE_APPLICATION&client_id=
  &scope=Sign%20Falcon%20Licensing&response_type=code`` -> 302 to ``emu.redirect_uri?code=`` (or JSON ``{code}``
  when no redirect_uri is set).  Tests usually call ``emu.issue_auth_code()`` instead.
* ``POST /_apis/falcon/auth/api/v2/token`` (Basic client creds, form) -> ``{access_token, refresh_token,
  token_type:"bearer", expires_in:3600}``; grants ``authorization_code`` (single-use code) and ``refresh_token``
  (rotating: the old refresh token dies).  Errors ``401 {"error":"invalid_client"}``, ``400 {"error":
  "invalid_grant"|"unsupported_grant_type"|"invalid_request"}``.
* ``POST /_apis/sign/thumbs/api/v2/requests/document`` multipart ``File`` (PDF) -> ``{documentToken}``; the v1
  path ``/_apis/sign/thumbs/api/Requests/document`` works too (the migration guide says it still does, U-E6).
* ``POST /_apis/sign/api/v2/requests?type=0`` ``{Title, Message, Documents[], AuditDetails{}, Connections?,
  CallbackUrl?, CallbackTypes?, CompletedDocumentsAttached?}`` -> ``{requestId}`` (only type 0 is emulated).
* ``POST /_apis/sign/api/v2/requests/{id}/signatories`` -- exactly the seed's fields (unknown fields -> 400
  while ``strict_fields``) -> ``{requestId, signatoryId}``.
* ``POST /_apis/sign/api/v2/requests/{id}/signatories/{sid}/stamps {Identifier, Type, Order?, Color?, Offset?,
  StampSize?|Size?}`` -> ``{requestId, stampsCount}``.
* ``POST /_apis/sign/api/v2/requests/{id}/send`` -> ``{requestId, status:"sent"}``.  Requires ≥1 signatory
  with SignatoryType 1 and a ``signature`` stamp for every SignatoryType-1 signatory (our judgement: the
  fixed-positioning page says a request needs at least one signing signatory; a signer without a signature
  placeholder could not sign).  CC signatories cannot carry stamps.
* ``POST|GET /_apis/sign/api/v2/webhooks`` account webhooks ``{url, events:["request.sent","request.completed"]}``.

Bodies are read case-insensitively (ASP.NET binding; PascalCase and camelCase both work).  Errors are JSON
``{"title", "status", "message", "errors": {Field: [msg]}}`` with 400/401/404 (401 ``message`` is "Access token
is expired" or "Invalid access token"; 404 ``message`` "Request ID not found").

Callbacks (per-request ``CallbackUrl`` and account webhooks), the captured v1 shape, **no signature**
(none is documented)::

    {RequestId, UserName, Email, Subject, EventId, EventDescription, EventTime, Documents?[{DocumentName,
     DocumentContent (base64 PDF)}]}

EventId 1 SignRequestReceived (per notified signatory, at send and when their order opens), 2
SignatoryCompleted, 3 RequestCompleted (UserName/Email of the last signer; ``Documents`` when
``CompletedDocumentsAttached``; the audit trail PDF too when ``attach_audit_trail``), 5 RequestRejected.  The last
EventId 2 and the EventId 3 are posted ``completion_gap`` (0.1 s) apart, as captured; ``async_webhooks = True``
with ``completion_gap = 0`` makes them race.  ``duplicate_received = True`` re-sends each EventId 1 (the
khrental capture).

Readings chosen where the spec is unconfirmed (§7):

* U-E1 refresh: ``refresh_token_style = "form"`` (standard ``grant_type=refresh_token&refresh_token=`` form);
  ``"multipart"`` accepts only the third-party ``Grant_Type=Refresh_Token`` + ``Refresh_Token`` multipart
  form; ``"both"`` accepts either.
* U-E2 ``CallbackTypes``: integers (EventIds) or names (``request.sent``=1, ``signatory.completed``=2,
  ``request.completed``=3, ``request.rejected``=5) filter the per-request callbacks; absent = all events.
* U-E3 status/download/cancel: NOT DOCUMENTED.  Third-party guesses, served only while
  ``undocumented_endpoints`` is True (**default True**): ``GET /_apis/sign/api/v2/requests/{id}``,
  ``GET .../requests/{id}/documents`` -> ``[{documentName, downloadUrl}]``,
  ``GET /_apis/sign/api/v2/documents/{token}/download``, ``POST .../requests/{id}/cancel``.
* U-E4: callbacks carry no authenticity proof.  U-E5: reject is EventId 5; there is no expiry event.
* OTP: ``MobileNumber`` must be E.164 (``+`` and 8-15 digits) for Type 2/4 when ``IsRequired``; ``AccessCode``
  is required for Type 3 when ``IsRequired``.
* §6.7 propagation delay: ``stamp_propagation_delay`` seconds (default 0) during which a new signatory is
  not yet visible to the stamps endpoint (404).

Hooks: ``issue_auth_code()``, ``sign(request_id, email)`` (an approver "signs" = approves),
``reject(request_id, email, reason)``, ``outage``, ``fail_next``, ``delay``, ``rate_limit_per_s``,
``expire_tokens()``.  State: ``requests[id]`` (status draft|sent|completed|rejected|cancelled, signatories with
status draft|waiting|pending|completed|rejected|cc), ``uploads[token]``, ``sent_emails``, ``calls``,
``webhook_deliveries`` (each with ``event_id`` and the parsed ``payload``).
"""
from __future__ import annotations

from ..provider import ProviderEmulator, as_int, is_email, parse_multipart
from .common import (
                     CALLBACK_TYPE_NAMES,
                     E164_RE,
                     EVENT_NAMES,
                     HEX_COLOR_RE,
                     OTP_FIELDS,
                     SIGN,
                     SIGNATORY_FIELDS,
                     STAMP_TYPES,
                     WEBHOOK_EVENTS,
                     _bad,
                     _ci,
                     _field_err,
                     _iso,
)
from .emulator import EviaEmulator

__all__ = ["EviaEmulator", "ProviderEmulator", "as_int", "is_email", "parse_multipart", "E164_RE", "HEX_COLOR_RE",
           "STAMP_TYPES", "EVENT_NAMES", "CALLBACK_TYPE_NAMES", "WEBHOOK_EVENTS", "SIGNATORY_FIELDS", "OTP_FIELDS",
           "SIGN", "_bad", "_field_err", "_ci", "_iso"]
