"""signNow REST API emulator (``SIGNNOW_API_BASE``), following /work/shared/specs/esign-providers.md §1 and the
seed ``signnow-invite-to-sign.txt`` -- not any product code.  It validates requests and answers with the
documented error shapes and codes; it is not a mock that accepts anything.

Quick use::

    emu = SignNowEmulator(basic_token=b64("cid:secret"), users={"owner@acme.test": "pw"}).start()
    ...  # product calls emu.base_url
    emu.sign(document_id, "signer@x.test")      # the emulated signer signs; webhooks are posted
    emu.decline(document_id, "signer@x.test", reason="no")
    emu.expire(document_id)                     # pending invites pass expiration_time (no webhook: none exists)
    emu.view(document_id, "signer@x.test")      # opens it: history ``document_viewed``, ``document.open`` webhooks
    emu.lose_subscription(event="user.document.open")  # a subscription vanishes at signNow (dashboard, expiry)

Constructor: ``SignNowEmulator(basic_token, users={email: password}, token_ttl=2592000)``.  Other hooks:
``issue_token(user=None)`` (skip the grant), ``field_invite(document_id, email)``, ``signed_pdf(doc, with_history)``,
``webhook_sender = fn(url, body, headers) -> status`` (deliver without HTTP, e.g. into Django's test client),
``async_webhooks = True`` (post from a thread), ``calls_to(method, path_regex)``.  ``sign``/``decline`` raise
ValueError when the signer has no open invite, it is not their turn (order), the invite expired or was declined.

Fault injection (shared with the Evia emulator): ``outage(seconds, status=503)``, ``fail_next(n, status=500)``,
``delay = seconds``, ``rate_limit_per_s = N`` (429 + ``Retry-After``), ``expire_tokens()``.

Inspectable state: ``documents[id]`` (fields, roles, field_invites, requests (freeform), cc/cc_step/viewers,
history, staged_invites, cancelled_invites, subscriptions hit), ``sent_emails`` (``{"kind": invite|reminder|
resend|copy|cc|completed, "to", "document_id", ...}``), ``calls`` (method, path, query, headers, json, status),
``webhook_deliveries`` (url, event, headers, body, status|error), ``subscriptions``, ``tokens``.

Error shapes used (spec §1.12): API validation ``{"errors":[{"code":65536,"message":...}]}``; bad token
``401 {"error":"invalid_token","code":1537}``; token endpoint ``400 {"error":"invalid_client"}`` /
``400 {"error":"Invalid credentials.","code":826}``; verify ``400 {"error":"invalid_token"}``; unknown document
``404 {"errors":[{"code":65582,"message":"Document not found"}]}``; 429 ``{"error":"Too Many Requests"}``.

Readings chosen where the spec marks a point UNCONFIRMED (§7), each switchable by an attribute:

* U-S1 webhook signature: header ``X-SignNow-Signature`` = HMAC-SHA256(raw body, secret_key), **hex** by
  default; ``webhook_secret_encoding = "base64"`` switches.  ``secret_key`` is read from ``attributes`` or the
  top level of the subscription body.  No signature header without a secret.  No retries.
* U-S2 ``with_history``: values in ``with_history_values`` (default ``("1",)``, the OAS reading) append one
  "Document history" page; add ``"yes"`` to emulate the Python-SDK reading.
* ``reminder``: integer days only, as documented (an object is 65536 "reminder must be an integer.").
* ``expiration_days`` on invite: a positive integer (no range is documented); ≤30 on ``POST /field_invite``.
* A field invite's ``to[]`` takes only the documented keys (anything else, e.g. ``method``, is 65536).
* U-S5 subscription GET/PUT/DELETE: Bearer **or** Basic app token accepted (POST needs Bearer).
* ``document.open`` / ``user.document.open`` (.NET EventType: "a document has been opened") fire on every
  ``view()``, the owner's too; the payload's ``viewer_user_unique_id`` is an opaque id per viewer (its meaning
  is undocumented) and ``initiator_id`` is empty for a signer without a signNow account.  Who viewed is only
  in ``historyfull`` (``document_viewed`` with the e-mail).  The invite records show no view.
* U-S6 ``document.fieldinvite.signed`` is posted once per signer who finishes (third-party reading);
  ``document.complete`` once after the last signature.
* Declined invites keep ``status`` (default) and show ``declined[]`` + ``is_full_declined``;
  ``declined_invite_status = "declined"`` makes the status change too.  Expired invites keep ``pending`` with a
  past ``expiration_time``; ``expired_invite_status = "expired"`` switches.
* ``fieldinvitecancel`` removes the field invites from ``GET /document`` (kept in ``cancelled_invites``) and
  answers ``{"status":"success"}``; the document can then be invited again.
* Bad refresh token -> ``400 {"error":"invalid_grant"}`` (standard OAuth2; the OAS lists no code for it).
  Refresh rotates: the old refresh token dies, the old access token lives until its own expiry.
* ``historyfull`` answers the OAS plain array; ``history_shape = "object"`` gives the MCP
  ``{document_history, email_history_events}`` form.
* Uploads accept PDF only (the emulator cannot render Office files): empty/non-PDF -> 400 65536.
"""
from __future__ import annotations

from ..provider import EMAIL_RE, PHONE_RE, ProviderEmulator, as_flag, as_int, is_email, new_id, parse_multipart
from .common import EVENTS, FIELD_TYPES, INVALID_TOKEN, TAG_TYPES, _err, _not_found
from .emulator import SignNowEmulator

__all__ = ["SignNowEmulator", "ProviderEmulator", "parse_multipart", "new_id", "is_email", "as_int", "as_flag",
           "EMAIL_RE", "PHONE_RE", "INVALID_TOKEN", "FIELD_TYPES", "TAG_TYPES", "EVENTS", "_err", "_not_found"]
