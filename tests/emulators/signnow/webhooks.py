"""signNow event subscriptions (``/api/v2/events``) and webhook delivery."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

from ..base import Request, Response, json_response
from ..provider import new_id
from .common import EVENTS, _err


class WebhooksMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ webhooks
    def h_sub_create(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        if not isinstance(body, dict):
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        event = body.get("event")
        if event in (None, ""):
            return _err(65582, "event must not be empty")
        if not isinstance(event, str):
            return _err(65582, "event must be string")
        if event not in EVENTS:
            return _err(65582, f"event {event} is not supported")
        if body.get("action") != "callback":
            return _err(65536, "Action must be equal 'callback'")
        attrs = body.get("attributes")
        if not isinstance(attrs, dict) or not attrs:
            return _err(65536, "attributes must not be empty")
        if not attrs.get("callback"):
            return _err(65536, "'callback' is missing.")
        if not re.match(r"^https?://[^\s/]+", str(attrs["callback"])):
            return _err(65536, "callback must be url")
        if "headers" in attrs and not isinstance(attrs["headers"], dict):
            return _err(65536, "headers must be an object")
        entity = body.get("entity_id")
        if not entity:
            return _err(65536, "entity_id must not be empty")
        with self.lock:
            if event.startswith("user."):
                allowed = entity == self.user_ids[user.lower()]
            else:
                d = self.documents.get(entity)
                allowed = bool(d and d["owner"].lower() == user.lower())
            if not allowed:
                return json_response({"code": 403, "message": "Subscription to event is not allowed"}, 403)
            sub_id = new_id()
            self.subscriptions[sub_id] = {
                "id": sub_id, "event": event, "entity_id": entity, "action": "callback", "owner": user,
                "json_attributes": {
                    "use_tls_12": bool(attrs.get("use_tls_12", False)),
                    "docid_queryparam": bool(attrs.get("docid_queryparam", False)),
                    "integration_id": attrs.get("integration_id"),
                    "callback_url": attrs["callback"], "headers": dict(attrs.get("headers") or {}),
                    "secret_key": attrs.get("secret_key") or body.get("secret_key"),
                    "delete_access_token": bool(attrs.get("delete_access_token",
                                                          body.get("delete_access_token", False))),
                },
                "created": int(time.time()), "callbacks": [],
            }
        return Response(204)

    def _sub_auth(self, req: Request):
        """Bearer (OAS) or Basic app token (Python SDK) -- U-S5. Returns (owner or '*', error)."""
        if self._basic_ok(req):
            return "*", None
        return self._user_or_401(req)

    def _sub_public(self, s: dict) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in s.items()
                if k not in ("callbacks", "owner")}

    def h_sub_list(self, req: Request) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            data = [self._sub_public(s) for s in self.subscriptions.values()
                    if user == "*" or s["owner"].lower() == user.lower()]
        return json_response({"data": data})

    def h_sub_update(self, req: Request, sub_id: str) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        s = self.subscriptions.get(sub_id)
        if not s or (user != "*" and s["owner"].lower() != user.lower()):
            return json_response({"code": 404, "message": "Subscription not found"}, 404)
        try:
            body = req.json()
        except ValueError:
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        attrs = (body or {}).get("attributes") or {}
        with self.lock:
            if body.get("event"):
                s["event"] = body["event"]
            ja = s["json_attributes"]
            if attrs.get("callback"):
                ja["callback_url"] = attrs["callback"]
            for k in ("use_tls_12", "docid_queryparam", "integration_id", "headers", "secret_key",
                      "delete_access_token"):
                if k in attrs:
                    ja[k] = attrs[k]
        return Response(204)

    def h_sub_delete(self, req: Request, sub_id: str) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            s = self.subscriptions.get(sub_id)
            if not s or (user != "*" and s["owner"].lower() != user.lower()):
                return json_response({"code": 404, "message": "Subscription not found"}, 404)
            del self.subscriptions[sub_id]
        return Response(204)

    def h_sub_callbacks(self, req: Request, sub_id: str | None = None) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            subs = [self.subscriptions[sub_id]] if sub_id in self.subscriptions else (
                [] if sub_id else list(self.subscriptions.values()))
            subs = [s for s in subs if user == "*" or s["owner"].lower() == user.lower()]
            if sub_id and not subs:
                return json_response({"code": 404, "message": "Subscription not found"}, 404)
            data = []
            for s in subs:
                for c in s["callbacks"]:
                    rec = c["_record"]
                    item = {k: v for k, v in c.items() if k != "_record"}
                    item.update(response_status_code=rec.get("status"), response_content=rec.get("error", ""),
                                request_end_time=c["request_start_time"], duration=0)
                    data.append(item)
        return json_response({"data": data})

    def sign_body(self, body: bytes, secret: str) -> str:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode() if self.webhook_secret_encoding == "base64" else digest.hex()

    def lose_subscription(self, event: str | None = None, sub_id: str | None = None) -> list[str]:
        """A subscription vanishes on signNow's side (deleted in the dashboard, expired); returns the ids gone."""
        with self.lock:
            gone = [i for i, s in self.subscriptions.items() if (sub_id is None or i == sub_id)
                    and (event is None or s["event"] == event)]
            for i in gone:
                del self.subscriptions[i]
        return gone

    def _events(self, doc: dict, events: list[str], initiator: str | None, viewer: str | None = None) -> list[tuple]:
        """Build (url, body, headers, record) for every subscription matching each document event."""
        batch = []
        for event in events:
            for s in self.subscriptions.values():
                if s["event"] == event and s["entity_id"] == doc["id"]:
                    pass
                elif s["event"] == "user." + event and s["entity_id"] == doc["user_id"]:
                    pass
                else:
                    continue
                ja = s["json_attributes"]
                url = ja["callback_url"]
                if ja.get("docid_queryparam"):
                    url += ("&" if "?" in url else "?") + "document_id=" + doc["id"]
                meta = {"timestamp": int(time.time()), "event": s["event"], "environment": self.environment,
                        "callback_url": url, "initiator_id": self.user_ids.get((initiator or "").lower(), ""),
                        "access_token": ""}
                if ja.get("delete_access_token"):
                    del meta["access_token"]
                else:
                    meta["access_token"] = self._issue(doc["owner"])["access_token"]
                payload = {"meta": meta, "content": {"document_id": doc["id"], "document_name": doc["document_name"],
                                                     "user_id": doc["user_id"], "viewer_user_unique_id": viewer}}
                raw = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **{str(k): str(v) for k, v in ja["headers"].items()}}
                if ja.get("secret_key"):
                    headers["X-SignNow-Signature"] = self.sign_body(raw, ja["secret_key"])
                record = {"event": s["event"], "subscription_id": s["id"], "document_id": doc["id"],
                          "payload": payload}
                s["callbacks"].append({"id": new_id(), "entity_id": s["entity_id"], "event_subscription_id": s["id"],
                                       "event_subscription_active": True, "event_name": s["event"],
                                       "callback_url": url, "request_method": "POST",
                                       "request_start_time": int(time.time()), "request_content": payload,
                                       "request_headers": headers, "_record": record})
                batch.append((url, raw, headers, record))
        return batch
