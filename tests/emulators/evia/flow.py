"""Evia request flow: send, signing order, callbacks, completed documents and the signer's sign/reject."""
from __future__ import annotations

import base64
import json
import threading
import time

from ..base import Request, Response, json_response
from ..pdf import make_pdf
from .common import EVENT_NAMES, _bad, _field_err, _iso


class FlowMixin:
    """Mixin of ``EviaEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ send & flow
    def _actionable(self, rq: dict) -> list[dict]:
        return [s for s in rq["signatories"] if s["type"] in (1, 2)]

    def _open_next(self, rq: dict) -> list[dict]:
        """Signatories whose turn starts now: the lowest open Order (equal Order = parallel)."""
        open_ = [s for s in self._actionable(rq) if s["status"] in ("waiting", "pending")]
        if not open_:
            return []
        current = min(s["order"] for s in open_)
        newly = [s for s in open_ if s["order"] == current and s["status"] == "waiting"]
        for s in newly:
            s["status"] = "pending"
            self.sent_emails.append({"kind": "sign_request", "to": s["email"], "requestId": rq["requestId"],
                                     "private_message": s["private_message"], "otp": s["otp"], "ts": time.time()})
        return newly

    def h_send(self, req: Request, rid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            if rq["status"] != "draft":
                return _bad(f"Request has already been sent (status {rq['status']}).")
            signers = [s for s in rq["signatories"] if s["type"] == 1]
            if not signers:
                return _field_err("Signatories", "At least one signatory with SignatoryType 1 (Signer) is required.")
            for s in signers:
                if not any(st["Type"] == "signature" for st in s["stamps"]):
                    return _field_err("Stamps", f"Signer {s['email']} has no signature stamp.")
            rq["status"] = "sent"
            rq["sent_at"] = time.time()
            for s in rq["signatories"]:
                s["status"] = "cc" if s["type"] == 3 else "waiting"
            batch = [self._callback(rq, 1, s) for s in self._open_next(rq)]
            if self.duplicate_received:
                batch = [x for item in batch for x in (item, item)]
        self._post_all(self._flatten(batch))
        return json_response({"requestId": rid, "status": "sent"})

    def _callback(self, rq: dict, event_id: int, who: dict | None) -> list[tuple]:
        """(url, body, headers, record) items for one event: the request CallbackUrl + account webhooks."""
        payload = {"RequestId": rq["requestId"], "UserName": who["name"] if who else "",
                   "Email": who["email"] if who else "", "Subject": rq["title"], "EventId": event_id,
                   "EventDescription": EVENT_NAMES[event_id], "EventTime": _iso()}
        if event_id == 3 and rq["attach"]:
            payload["Documents"] = [{"DocumentName": name, "DocumentContent": base64.b64encode(pdf).decode()}
                                    for name, pdf in self.completed_documents(rq)]
        rq["events"].append(payload)
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        items = []
        if rq["callback_url"] and (rq["callback_types"] is None or event_id in rq["callback_types"]):
            items.append((rq["callback_url"], raw, headers, {"event_id": event_id, "payload": payload,
                                                             "requestId": rq["requestId"], "kind": "callback"}))
        for w in self.webhooks.values():
            if event_id in w["event_ids"]:
                items.append((w["url"], raw, headers, {"event_id": event_id, "payload": payload,
                                                       "requestId": rq["requestId"], "kind": "webhook"}))
        return items

    @staticmethod
    def _flatten(batch: list[list[tuple]]) -> list[tuple]:
        return [dict_item for items in batch for dict_item in items]

    def _post_all(self, batch: list[tuple], gap: float = 0.0) -> None:
        # every record is a fresh dict per delivery (the duplicate_received copies must not share one)
        super()._post_all([(u, b, h, dict(r)) for u, b, h, r in batch], gap)

    # ------------------------------------------------------------------------------------------------ files
    def completed_documents(self, rq: dict) -> list[tuple[str, bytes]]:
        signed = [s for s in rq["signatories"] if s["status"] == "completed"]
        out = []
        for tok in rq["documents"]:
            up = self.uploads[tok]
            n = max(up["pages"], 1)
            pages = [f"{up['name']} - page {i + 1} of {n}" for i in range(n)]
            if rq["status"] == "completed":
                pages[-1] += "\n" + "\n".join(f"Signed by {s['name']} <{s['email']}>" for s in signed)
            out.append((up["name"], make_pdf(pages, title=up["name"])))
        if self.attach_audit_trail:
            out.append(("audit_trail.pdf", self.audit_trail_pdf(rq)))
        return out

    def audit_trail_pdf(self, rq: dict) -> bytes:
        lines = ["Audit Trail", f"Request: {rq['requestId']}", f"Title: {rq['title']}"]
        lines += [f"{e['EventTime']} {e['EventDescription']} {e['Email']}" for e in rq["events"]]
        return make_pdf(["\n".join(lines)], title="audit_trail")

    # ------------------------------------------------------------------------------------------------ hooks
    def _signatory(self, rq: dict, email: str) -> dict:
        s = next((s for s in rq["signatories"] if s["email"].lower() == email.lower()), None)
        if not s:
            raise ValueError(f"{email} is not a signatory of {rq['requestId']}")
        if rq["status"] != "sent":
            raise ValueError(f"request is {rq['status']}, not sent")
        if s["type"] == 3:
            raise ValueError("a CC signatory cannot act")
        if s["status"] == "waiting":
            raise ValueError("not this signatory's turn yet (an earlier Order is still open)")
        if s["status"] != "pending":
            raise ValueError(f"signatory is already {s['status']}")
        return s

    def sign(self, request_id: str, email: str) -> None:
        """The emulated signatory signs (approves, for an approver).  Raises ValueError out of turn."""
        with self.lock:
            rq = self.requests[request_id]
            s = self._signatory(rq, email)
            s["status"] = "completed"
            s["completed_at"] = time.time()
            first = self._callback(rq, 2, s)
            later: list[tuple] = []
            if all(x["status"] == "completed" for x in self._actionable(rq)):
                rq["status"] = "completed"
                rq["completed_at"] = time.time()
                for cc in rq["signatories"]:
                    if cc["type"] == 3:
                        self.sent_emails.append({"kind": "completed_copy", "to": cc["email"],
                                                 "requestId": request_id, "ts": time.time()})
                later = self._callback(rq, 3, s)
            else:
                for nxt in self._open_next(rq):
                    first += self._callback(rq, 1, nxt)
        if later:
            # EventId 2 then, ~completion_gap later, EventId 3 (as captured)
            self._post_all(first)
            if not self.async_webhooks:
                time.sleep(self.completion_gap)
                self._post_all(later)
            else:
                def _later():
                    time.sleep(self.completion_gap)
                    self._post_all(later)
                threading.Thread(target=_later, daemon=True).start()
        else:
            self._post_all(first)

    def reject(self, request_id: str, email: str, reason: str = "Rejected by signatory") -> None:
        with self.lock:
            rq = self.requests[request_id]
            s = self._signatory(rq, email)
            s["status"] = "rejected"
            s["reject_reason"] = reason
            rq["status"] = "rejected"
            batch = self._callback(rq, 5, s)
        self._post_all(batch)
