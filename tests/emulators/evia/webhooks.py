"""Evia account webhooks (``/_apis/sign/api/v2/webhooks``)."""
from __future__ import annotations

import re
import uuid

from ..base import Request, Response, json_response
from .common import WEBHOOK_EVENTS, _ci, _field_err


class WebhooksMixin:
    """Mixin of ``EviaEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ webhooks
    def h_webhook_create(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        url = b.get("url")
        scheme = r"^https://" if self.webhooks_require_https else r"^https?://"
        if not isinstance(url, str) or not re.match(scheme + r"[^\s/]+", url):
            return _field_err("url", "A public HTTPS url is required.")
        events = b.get("events")
        if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
            return _field_err("events", f"events must be a non-empty subset of {sorted(WEBHOOK_EVENTS)}.")
        wid = str(uuid.uuid4())
        with self.lock:
            self.webhooks[wid] = {"id": wid, "url": url, "events": list(events),
                                  "event_ids": {WEBHOOK_EVENTS[e] for e in events}}
        return json_response({"id": wid, "url": url, "events": list(events)})

    def h_webhook_list(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        with self.lock:
            return json_response([{"id": w["id"], "url": w["url"], "events": w["events"]}
                                  for w in self.webhooks.values()])
