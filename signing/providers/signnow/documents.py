"""signNow document reads: which mode a document is in, its status snapshot, and the signed copy.

Everything here works from what ``GET /document/{id}`` (and the freeform-invite list) return, so a status
poll, a callback and a resumed send all read the document the same way.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone

from signing import states
from signing.base import ProviderError, SignedFiles, SignerState, StatusSnapshot

log = logging.getLogger("b24sign.providers.signnow")

# Invite statuses as signNow spells them (field and freeform invites share the words).
DONE = {"fulfilled", "skipped", "signed", "completed", "done"}
OPEN = {"created", "pending", "sent", "waiting"}
GONE = {"cancelled", "canceled", "deleted"}


# -- reads -------------------------------------------------------------------------------------------------
def document_id(request) -> str:
    doc_id = request.external_id or (request.provider_state or {}).get("document_id")
    if not doc_id:
        raise ProviderError("signNow: this request has no signNow document yet", permanent=True, code="input")
    return doc_id


def read_document(client, doc_id: str) -> dict:
    return client.json("GET", f"/document/{doc_id}")


def read_freeform_invites(client, doc_id: str) -> list[dict]:
    data = client.json("GET", f"/v2/documents/{doc_id}/free-form-invites")
    return [i for i in (data.get("data") or []) if isinstance(i, dict)]


def has_invite(doc: dict) -> bool:
    return bool(doc.get("field_invites")) or any(not r.get("canceled") for r in doc.get("requests") or [])


def detect_mode(doc: dict) -> str:
    # Freeform invites show up as ``requests``; role-based ones as ``field_invites``.
    return "freeform" if doc.get("requests") and not doc.get("field_invites") else "field"


# -- status ------------------------------------------------------------------------------------------------
def status_snapshot(client, request) -> StatusSnapshot:
    doc_id = document_id(request)
    doc = read_document(client, doc_id)
    state = request.provider_state or {}
    # A document with no invites left cannot tell its mode: the one saved at send time decides.
    mode = detect_mode(doc) if doc.get("field_invites") or doc.get("requests") else state.get("mode", "field")
    if mode == "freeform":
        snap = freeform_status(doc_id, read_freeform_invites(client, doc_id))
    else:
        snap = field_status(doc, state)
    add_views(client, doc_id, request, snap)
    return snap


# -- who has opened the document ----------------------------------------------------------------------------
VIEWED = "document_viewed"  # the historyfull event (spec §1.6); the invite itself carries no view


def add_views(client, doc_id: str, request, snap: StatusSnapshot) -> None:
    """Mark the signers the document's history shows opening it.  ``user.document.open`` names nobody by
    e-mail (and fires for the owner too), so the history is the one place that says who: read only while
    some signer still to sign has no view recorded (one GET per status read until everyone has looked)."""
    waiting = {e.lower() for e in request.signers.filter(status="pending", viewed_at__isnull=True)
               .values_list("email", flat=True)}
    if not waiting:
        return
    first = first_views(client.json("GET", f"/document/{doc_id}/historyfull"))
    for s in snap.signers:  # signed since, too: the view came first, and the same change tells both
        if s.email.lower() in waiting and s.email.lower() in first:
            s.viewed_at = first[s.email.lower()]


def first_views(history) -> dict[str, str]:
    """email -> ISO time of that person's first ``document_viewed`` in a historyfull answer (either shape)."""
    first: dict[str, float] = {}
    for event in normalise_history(history)["document_history"]:
        if not isinstance(event, dict) or event.get("event") != VIEWED or not event.get("email"):
            continue
        email, at = str(event["email"]).lower(), as_float(event.get("created") or event.get("client_timestamp"))
        if email not in first or (at and at < first[email]):
            first[email] = at
    return {email: iso(at) or datetime.now(timezone.utc).isoformat() for email, at in first.items()}


def field_status(doc: dict, state: dict) -> StatusSnapshot:
    invites = [fi for fi in doc.get("field_invites") or [] if isinstance(fi, dict)]
    raw = {"document_id": doc.get("id"), "field_invites": [light_invite(fi) for fi in invites]}
    signers = signer_states(doc)
    if not invites:
        # signNow drops cancelled field invites from the document (ours or from its web app).
        status = states.CANCELLED if state.get("invite_sent") or state.get("cancelled") else states.SENT
        return StatusSnapshot(status=status, signers=signers, raw=raw,
                              reason="the invite was cancelled in signNow" if status == states.CANCELLED else "")
    now = time.time()
    declined = [fi for fi in invites if fi.get("declined") or truthy(fi.get("is_full_declined"))
                or str(fi.get("status", "")).lower() in ("declined", "rejected")]
    if declined:
        fi = declined[0]
        texts = [d.get("declined_text") for d in fi.get("declined") or [] if isinstance(d, dict)]
        reason = f"{fi.get('email')} declined" + (f": {texts[0]}" if texts and texts[0] else "")
        return StatusSnapshot(status=states.DECLINED, signers=signers, raw=raw, reason=reason)
    statuses = [str(fi.get("status", "")).lower() for fi in invites]
    if all(s in DONE for s in statuses) and any(s != "skipped" for s in statuses):
        return StatusSnapshot(status=states.COMPLETED, signers=signers, raw=raw)
    if all(s in GONE or s in DONE for s in statuses):
        return StatusSnapshot(status=states.CANCELLED, signers=signers, raw=raw,
                              reason="the invite was cancelled in signNow")
    expired = [fi for fi in invites if str(fi.get("status", "")).lower() == "expired" or (
        str(fi.get("status", "")).lower() in OPEN and 0 < as_float(fi.get("expiration_time")) < now)]
    if expired:
        return StatusSnapshot(status=states.EXPIRED, signers=signers, raw=raw,
                              reason=f"the invite to {expired[0].get('email')} expired")
    unknown = sorted({s for s in statuses} - DONE - OPEN - GONE)
    if unknown:
        log.warning("signNow field invite status(es) %s read as pending", unknown)
    if any(s in DONE for s in statuses):
        return StatusSnapshot(status=states.PARTIALLY_SIGNED, signers=signers, raw=raw)
    return StatusSnapshot(status=states.SENT, signers=signers, raw=raw)


def freeform_status(doc_id: str, invites: list[dict]) -> StatusSnapshot:
    signers = [SignerState(email=i.get("email", ""), status=freeform_signer_status(i.get("status")),
                           external_id=str(i.get("id", ""))) for i in invites]
    raw = {"document_id": doc_id, "free_form_invites": invites}
    statuses = [str(i.get("status", "")).lower() for i in invites]
    if statuses and all(s in DONE or s in GONE for s in statuses) and any(s in DONE for s in statuses):
        return StatusSnapshot(status=states.COMPLETED, signers=signers, raw=raw)
    if statuses and all(s in GONE for s in statuses):
        return StatusSnapshot(status=states.CANCELLED, signers=signers, raw=raw,
                              reason="the invite was cancelled in signNow")
    return StatusSnapshot(status=states.SENT, signers=signers, raw=raw)


def signer_states(doc: dict) -> list[SignerState]:
    out = []
    for fi in doc.get("field_invites") or []:
        status = str(fi.get("status", "")).lower()
        declined = fi.get("declined") or truthy(fi.get("is_full_declined")) or status in ("declined", "rejected")
        out.append(SignerState(
            email=fi.get("email", ""), external_id=str(fi.get("id", "")),
            status="declined" if declined else "signed" if status in DONE else
            "cancelled" if status in GONE else "pending",
            signed_at=iso(fi.get("updated")) if status in DONE else ""))
    for rq in doc.get("requests") or []:
        out.append(SignerState(
            email=rq.get("signer_email", ""), external_id=str(rq.get("id", "")),
            status="signed" if rq.get("signature_id") else "cancelled" if rq.get("canceled") else "pending"))
    return out


def freeform_signer_status(status) -> str:
    status = str(status or "").lower()
    return "signed" if status in DONE else "cancelled" if status in GONE else "pending"


def light_invite(fi: dict) -> dict:
    """The invite fields worth keeping in the snapshot's raw data."""
    keys = ("id", "email", "role", "status", "expiration_time", "declined", "is_full_declined", "updated")
    return {k: fi.get(k) for k in keys if k in fi}


# -- signed copy -------------------------------------------------------------------------------------------
def signed_copy(client, request) -> SignedFiles:
    doc_id = document_id(request)
    state = request.provider_state or {}
    doc = read_document(client, doc_id)
    original_pages = as_int(state.get("page_count"), 0) or as_int(doc.get("page_count"), 0)
    pdf = client.download(f"/document/{doc_id}/download?type=collapsed&with_history=1")
    if not pdf.startswith(b"%PDF"):
        raise ProviderError("signNow: the signed copy is not a PDF", code="bad_response")
    pages = page_count(pdf)
    if original_pages and pages and pages <= original_pages:
        # U-S2: no history pages appended: the other documented reading of the flag.
        retry = client.download(f"/document/{doc_id}/download?type=collapsed&with_history=yes")
        if retry.startswith(b"%PDF"):
            pdf = retry
    history = client.json("GET", f"/document/{doc_id}/historyfull")
    audit = normalise_history(history)
    title = safe_name(request.title or doc.get("document_name") or "document")
    return SignedFiles(pdf=pdf, pdf_name=f"{title}.pdf",
                       audit=json.dumps(audit, indent=2, ensure_ascii=False).encode(),
                       audit_name=f"{title} audit trail.json")


def normalise_history(history) -> dict:
    """historyfull is a plain array (OAS) or ``{document_history, email_history_events}`` (MCP)."""
    if isinstance(history, list):
        return {"document_history": history, "email_history_events": []}
    if isinstance(history, dict):
        return {"document_history": history.get("document_history") or [],
                "email_history_events": history.get("email_history_events") or []}
    return {"document_history": [], "email_history_events": []}


PAGE_RE = re.compile(rb"/Type\s*/Page\b(?!s)")


def page_count(pdf: bytes) -> int:
    return len(PAGE_RE.findall(pdf))


def file_page_count(path, chunk: int = 1024 * 1024) -> int:
    """page_count() of a PDF on disk, read in chunks (a 50 MiB upload never sits in memory whole).

    A match may straddle two chunks: the last ``KEEP`` bytes are carried into the next round and matches
    starting there are counted only then.
    """
    keep, count, carry = 64, 0, b""
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            buf = carry + data
            limit = len(buf) - keep
            count += sum(1 for m in PAGE_RE.finditer(buf) if m.start() < limit)
            carry = buf[max(limit, 0):]
    return count + sum(1 for _ in PAGE_RE.finditer(carry))


def safe_name(name: str) -> str:
    name = re.sub(r'[\\/:*?"<>|\r\n\t]+', " ", name).strip()
    return re.sub(r"\.pdf$", "", name, flags=re.I)[:150] or "document"


# -- lenient readings of signNow's loosely typed values ----------------------------------------------------
def iso(ts) -> str:
    value = as_float(ts)
    return datetime.fromtimestamp(value, tz=timezone.utc).isoformat() if value else ""


def truthy(v) -> bool:
    return v in (True, 1, "1", "true")


def as_int(value, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
