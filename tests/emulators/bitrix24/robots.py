"""The portal's queue server running robots (§3): workflows, event tokens, deliveries."""
from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field

import requests

from ..base import parse_php_form, php_build_query
from .core import rand_alnum, rand_hex


@dataclass
class Workflow:
    """One robot run: what the queue server sent, what our handler answered, what came back."""
    workflow_id: str
    activity_name: str
    event_id: str | None
    event_token: str
    code: str
    document_id: list
    document_type: list | None
    properties: dict
    user_id: int
    use_subscription: str
    timeout_duration: int
    robot: dict  # snapshot of the registration at start
    pairs: list = field(default_factory=list)  # the exact form pairs POSTed
    deliveries: list = field(default_factory=list)  # [(status or None, body or exception text)]
    answers: list = field(default_factory=list)  # accepted bizproc.event.send params
    log: list = field(default_factory=list)  # activity.log messages (and the event.send LOG_MESSAGE)
    ignored_sends: list = field(default_factory=list)  # sends that reached a closed activity
    closed: bool = False
    terminated: bool = False
    is_timeout: bool = False
    return_values: dict = field(default_factory=dict)

    @property
    def response_status(self):
        return self.deliveries[0][0] if self.deliveries else None

    @property
    def response_body(self):
        return self.deliveries[0][1] if self.deliveries else None

    @property
    def delivered_form(self) -> dict:
        return parse_php_form(self.pairs)


class RobotsMixin:
    """Mixin of ``Portal`` (state lives there)."""

    # ------------------------------------------------------------------ queue server: robot calls (§3)
    def _event_token(self, wf_id: str, act: str, event_id: str) -> str:
        raw = f"{wf_id}|{act}|{event_id}"
        return raw + "." + hmac.new(self.secret, raw.encode(), hashlib.sha256).hexdigest()

    def parse_event_token(self, token) -> tuple[str, str, str] | None:
        """(workflow_id, activity_name, event_id) if the signature is ours, else None."""
        if not isinstance(token, str) or "." not in token:
            return None
        raw, sig = token.rsplit(".", 1)
        good = hmac.new(self.secret, raw.encode(), hashlib.sha256).hexdigest()
        parts = raw.split("|")
        if len(parts) != 3 or not hmac.compare_digest(sig, good):
            return None
        return parts[0], parts[1], parts[2]

    @staticmethod
    def document_type_for(document_id) -> list:
        module, entity, doc = document_id
        m = re.match(r"^(.*)_\d+$", doc)
        return [module, entity, m.group(1) if m else doc]

    def start_robot(self, code: str, document_id=("crm", "CCrmDocumentDeal", "DEAL_1"), document_type=None,
                    properties: dict | None = None, user_id: int = 1, use_subscription=None,
                    timeout_duration: int = 0, send_refresh_token: bool = True,
                    send_access_token: bool = True, deliver: bool = True) -> Workflow:
        """The queue server runs robot ``code``: POSTs the call to its HANDLER once (no retry).

        ``document_type=None`` derives it from ``document_id``; ``False`` omits it (older core).
        """
        with self.lock:
            if code not in self.robots:
                raise KeyError(f"robot {code!r} is not registered on portal {self.name}")
            robot = copy.deepcopy(self.robots[code])
        if use_subscription is None:
            use_subscription = robot.get("USE_SUBSCRIPTION") == "Y"
        sub = "Y" if use_subscription in (True, "Y") else "N"
        wf_id = f"{rand_hex(14)}.{secrets.randbelow(10**8):08d}"
        act = "A{}_{}_{}_{}".format(*(secrets.randbelow(10**n) for n in (5, 4, 5, 4)))
        event_id = rand_alnum(32)
        token = self._event_token(wf_id, act, event_id)
        doc_id = list(document_id)
        doc_type = None if document_type is False else list(document_type or self.document_type_for(doc_id))
        props = {}
        for k, v in (properties or {}).items():
            if isinstance(v, bool):
                v = "Y" if v else "N"
            elif v is None:
                v = ""
            elif isinstance(v, (list, tuple)):
                v = ["Y" if x is True else "N" if x is False else x for x in v]
            props[k] = v
        payload = {"workflow_id": wf_id, "code": code, "document_id": doc_id}
        if doc_type is not None:
            payload["document_type"] = doc_type
        payload["event_token"] = token
        if props:
            payload["properties"] = props
        payload.update({"use_subscription": sub, "timeout_duration": str(int(timeout_duration)),
                        "ts": str(int(time.time())),
                        "auth": self._auth_block(user_id, refresh=send_refresh_token, access=send_access_token)})
        pairs = php_build_query(payload)
        wf = Workflow(wf_id, act, event_id, token, code, doc_id, doc_type, props, int(user_id), sub,
                      int(timeout_duration), robot, pairs=pairs)
        if sub == "N":  # the activity closes at once; the token is useless
            wf.closed = True
            wf.event_id = None
        with self.lock:
            self.workflows[wf_id] = wf
        if deliver:
            self._deliver_robot(wf, pairs)
        return wf

    def _deliver_robot(self, wf: Workflow, pairs: list) -> requests.Response | None:
        with self.lock:
            self.stats.robot_deliveries += 1
        resp = self._post(wf.robot["HANDLER"], pairs, f"robot:{wf.code}")
        wf.deliveries.append((resp.status_code, resp.text) if resp is not None
                             else (None, self.deliveries[-1]["body"]))
        return resp

    def post_robot_call(self, workflow: Workflow, raw_pairs=None) -> requests.Response | None:
        """Re-POST the same delivery (a duplicate) or arbitrary pairs/dict to the robot's handler."""
        if raw_pairs is None:
            pairs = workflow.pairs
        elif isinstance(raw_pairs, dict):
            pairs = php_build_query(raw_pairs)
        else:
            pairs = list(raw_pairs)
        return self._deliver_robot(workflow, pairs)

    def workflow(self, event_token_or_id: str) -> Workflow | None:
        parsed = self.parse_event_token(event_token_or_id)
        return self.workflows.get(parsed[0] if parsed else event_token_or_id)

    def timeout_workflow(self, wf: Workflow) -> None:
        """The robot's timeout fired: IsTimeout=1, the activity closes, the token is dead."""
        with self.lock:
            wf.closed, wf.is_timeout, wf.event_id = True, True, None
            wf.return_values["IsTimeout"] = 1

    def terminate_workflow(self, wf: Workflow) -> None:
        with self.lock:
            wf.closed, wf.terminated, wf.event_id = True, True, None
