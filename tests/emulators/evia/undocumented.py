"""Evia status/documents/download/cancel: undocumented third-party guesses (spec U-E3)."""
from __future__ import annotations

from ..base import Request, Response, json_response
from .common import SIGN, _bad, _iso


class UndocumentedMixin:
    """Mixin of ``EviaEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ U-E3
    # ASSUMPTION: undocumented endpoints (spec §2.7, §7 U-E3).  Shapes follow a third-party integration's
    # test mocks ([{documentName, downloadUrl}]) or are our own; disabled when undocumented_endpoints=False.
    def _undocumented(self, req: Request) -> Response | None:
        if not self.undocumented_endpoints:
            return json_response({"error": "NOT_FOUND", "error_description": f"{req.method} {req.path}"}, 404)
        return self._auth(req)

    def h_status(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            return json_response({
                "requestId": rid, "title": rq["title"], "status": rq["status"],
                "signatories": [{"signatoryId": s["signatoryId"], "email": s["email"], "name": s["name"],
                                 "order": s["order"], "signatoryType": s["type"], "status": s["status"],
                                 "completedAt": _iso(s["completed_at"]) if s["completed_at"] else None}
                                for s in rq["signatories"]]})

    def h_documents(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        return json_response([{"documentName": self.uploads[t]["name"],
                               "downloadUrl": f"{self.base_url}{SIGN}/documents/{t}/download?requestId={rid}"}
                              for t in rq["documents"]])

    def h_download(self, req: Request, token: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq = self.requests.get(req.query.get("requestId", "")) or next(
            (r for r in self.requests.values() if token in r["documents"]), None)
        if token not in self.uploads or not rq:
            return _bad("Document not found", status=404)
        with self.lock:
            pdf = dict(self.completed_documents(rq))[self.uploads[token]["name"]]
        return Response(200, pdf, {"Content-Type": "application/pdf"})

    def h_cancel(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            if rq["status"] in ("completed", "rejected", "cancelled"):
                return _bad(f"Request cannot be cancelled (status {rq['status']}).")
            rq["status"] = "cancelled"
        return json_response({"requestId": rid, "status": "cancelled"})
