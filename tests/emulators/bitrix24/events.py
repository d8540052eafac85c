"""A portal's event delivery to the app (§1.3–1.6, sign events): auth blocks, POSTs."""
from __future__ import annotations

import time

import requests

from ..base import php_build_query
from .core import rand_hex

QUEUE_USER_AGENT = "Bitrix24 Webhook Engine"


class EventsMixin:
    """Mixin of ``Portal`` (state lives there)."""

    # ------------------------------------------------------------------ events (§1.3–1.6, sign events)
    def _auth_block(self, user_id: int | None, refresh: bool = True, access: bool = True) -> dict:
        auth = {}
        if user_id is not None:
            tok = self.issue_tokens(user_id)
            auth = {"access_token": tok["access_token"] if access else "", "expires": str(tok["expires"]),
                    "expires_in": str(self.access_ttl), "scope": self.cloud.scope, "domain": self.domain,
                    "server_endpoint": self.cloud.server_endpoint, "status": self.cloud.status,
                    "client_endpoint": self.client_endpoint, "member_id": self.member_id,
                    "user_id": str(user_id)}
            if refresh:
                auth["refresh_token"] = tok["refresh_token"]
        auth["application_token"] = self.application_token
        return auth

    def _post(self, url: str, pairs: list, kind: str) -> requests.Response | None:
        headers = {"User-Agent": QUEUE_USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            if self.cloud.transport is not None:  # e.g. Django's test client, for in-process tests
                resp = self.cloud.transport(url, pairs, headers)
            else:
                resp = requests.post(url, data=pairs, timeout=self.cloud.queue_timeout, allow_redirects=False,
                                     headers=headers)
            status, body = resp.status_code, resp.text
        except requests.RequestException as exc:
            resp, status, body = None, None, repr(exc)
        with self.lock:
            self.deliveries.append({"kind": kind, "url": url, "status": status, "body": body[:2000]})
        return resp

    def fire_event(self, event: str, clean: bool = False, data: dict | None = None,
                   user_id: int | None = None) -> list:
        """POST ``event`` to every handler bound for it (only after finish_install). Returns the responses
        (``None`` for a handler that could not be reached)."""
        event = event.upper()
        uid = user_id if user_id is not None else self.installer_user_id
        with self.lock:
            deliver = self.install_finished
            if event == "ONAPPINSTALL":
                payload_data = {"VERSION": str(self.cloud.version), "ACTIVE": "Y", "INSTALLED": "Y",
                                "LANGUAGE_ID": self.lang}
            elif event == "ONAPPUPDATE":
                prev = self.cloud.version
                self.cloud.version += 1
                self.application_token = rand_hex(32)
                self.robots.clear()  # core RestService::onRestAppUpdate -> onRestAppDelete
                self.app_forgets_card()
                payload_data = {"VERSION": str(self.cloud.version), "PREVIOUS_VERSION": str(prev),
                                "LANGUAGE_ID": self.lang}
            elif event == "ONAPPUNINSTALL":
                payload_data = {"LANGUAGE_ID": self.lang, "CLEAN": "1" if clean else "0"}
            else:
                payload_data = dict(data or {})
            handlers = [h for h in self.event_handlers if h["event"] == event]
        if event == "ONAPPUNINSTALL":
            auth = {"domain": self.domain, "server_endpoint": self.cloud.server_endpoint,
                    "client_endpoint": self.client_endpoint, "member_id": self.member_id,
                    "application_token": self.application_token}
            self.cloud.revoke_portal_tokens(self.member_id)
            with self.lock:
                self.installed = False
                self.robots.clear()
                self.app_forgets_card()
                self.event_handlers = []
        elif event in ("ONAPPINSTALL", "ONAPPUPDATE"):
            auth = self._auth_block(uid, refresh=True) if deliver else {}
        else:
            auth = self._auth_block(uid, refresh=False) if deliver else {}
        if not deliver:
            return []
        out = []
        for h in handlers:
            body = {"event": event, "event_handler_id": str(h["id"]), "data": payload_data, "ts": str(int(time.time())),
                    "auth": auth}
            with self.lock:
                self.stats.event_deliveries += 1
            out.append(self._post(h["handler"], php_build_query(body), f"event:{event}"))
        return out
