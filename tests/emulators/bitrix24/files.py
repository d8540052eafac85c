"""A portal's stored files and their signed download links (Drive, sign.b2e, CRM files)."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from ..base import Request, Response
from .core import B24Error

NGINX_404 = ("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>"
             "\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


class FilesMixin:
    """Mixin of ``Portal`` (state lives there)."""

    # ------------------------------------------------------------------ files and download links
    def store_file(self, name: str, data: bytes, mime: str | None = None, readers=None) -> int:
        """``readers``: the user ids (besides admins) who may download it; None: anyone on the portal."""
        with self.lock:
            self._file_seq += 1
            fid = self._file_seq
            self.files[fid] = {"id": fid, "name": name, "data": bytes(data),
                               "readers": set(readers) if readers is not None else None,
                               "mime": mime or ("application/pdf" if name.lower().endswith(".pdf")
                                                else "application/octet-stream")}
            return fid

    @staticmethod
    def can_read_file(ctx, f: dict) -> bool:
        readers = f.get("readers")
        return readers is None or ctx.is_admin or ctx.token.user_id in readers

    def _file_sig(self, kind: str, fid: int) -> str:
        return hmac.new(self.secret, f"{kind}|{fid}".encode(), hashlib.sha256).hexdigest()[:24]

    def download_url(self, kind: str, fid: int, auth: str) -> str:
        """``{client_endpoint}download.json?auth=…&token=<kind>|<fid>|<sig>`` (Drive, sign.b2e, docgen)."""
        token = f"{kind}|{fid}|{self._file_sig(kind, fid)}"
        return f"{self.client_endpoint}download.json?" + urlencode({"auth": auth, "token": token})

    def item_file_url(self, entity_type_id: int, item_id: int, field_name: str, fid: int, auth: str) -> str:
        q = {"auth": auth, "entityTypeId": entity_type_id, "id": item_id, "fieldName": field_name, "fileId": fid,
             "sig": self._file_sig("crm", fid)}
        return f"{self.client_endpoint}crm.controller.item.getFile.json?" + urlencode(q)

    def _download(self, req: Request):
        q = req.query
        fid, ok = None, False
        if "token" in q:
            parts = q["token"].split("|")
            if len(parts) == 3 and parts[1].isdigit():
                fid = int(parts[1])
                ok = hmac.compare_digest(parts[2], self._file_sig(parts[0], fid))
        elif "fileId" in q and str(q["fileId"]).isdigit():
            fid = int(q["fileId"])
            ok = hmac.compare_digest(q.get("sig", ""), self._file_sig("crm", fid))
        f = self.files.get(fid) if ok else None
        headers = {"Content-Disposition": f'attachment; filename="{f["name"] if f else "file"}"'}
        ua = req.headers.get("user-agent", "")
        if self.cloud.file_header_check and (not ua or ua.lower().startswith(("python-requests", "python-urllib"))
                                             or not req.headers.get("accept")):
            with self.lock:
                self.stats.downloads_refused += 1
            return Response(404, NGINX_404, {"Content-Type": "text/html", **headers})
        try:
            ctx = self.authenticate(q.get("auth"))
        except B24Error as e:
            return e.response()
        if f is None:
            return Response(404, NGINX_404, {"Content-Type": "text/html"})
        if not self.can_read_file(ctx, f):  # the link's token is the reader: another user's link fails too
            with self.lock:
                self.stats.downloads_refused += 1
            return B24Error("ACCESS_DENIED", "Access denied", 403).response()
        with self.lock:
            self.stats.downloads += 1
        return Response(200, f["data"], {"Content-Type": f["mime"], **headers})
