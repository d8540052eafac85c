"""signNow error bodies -> one code and one clear sentence for the workflow log.

signNow answers errors in several shapes (spec §1.12), and ``code`` may be an int or a string:

* ``{"errors": [{"code": 65536, "message": "..."}]}``   (API validation)
* ``{"error": "invalid_token", "code": 1537}``          (bad or expired bearer token)
* ``{"error": "Document not found"}`` / ``{"error": "invalid_client"}``  (token endpoint, some API calls)
* ``{"code": 400, "message": "..."}``                    (events API)
* ``{"404": "..."}``                                     (seen in the .NET SDK tests)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

# code -> (sentence, permanent).  "{msg}" is signNow's own message.  Transient ones are retried with backoff.
KNOWN: dict[str, tuple[str, bool]] = {
    "1537": ("the access token is invalid or expired; reconnect the signNow account", True),
    "826": ("the username or password was rejected; reconnect the signNow account", True),
    "invalid_client": ("the app's Basic authorization token was rejected; check it in the API dashboard", True),
    "invalid_grant": ("the refresh token was rejected", True),
    "invalid_request": ("the token request was rejected", True),
    "invalid_scope": ("the token scope was rejected", True),
    "invalid_token": ("the access token is invalid or expired; reconnect the signNow account", True),
    "65536": ("the request was rejected: {msg}", True),
    "65538": ("invalid email address: {msg}", True),
    "65582": ("not found: {msg}", True),
    "65594": ("the document has no fields; send it as a freeform invite or add text tags", True),
    "65615": ("{msg}", True),  # "Invite already exists." / "Field invite missing on this document."
    "65629": ("the document already has an invite", True),
    "66502": ("the field invite was not found", True),
    "22200": ("the sender email is not verified in signNow", True),
}
# HTTP statuses worth another try even though they are 4xx.
TRANSIENT_STATUS = frozenset({408, 409, 423, 425})


@dataclass
class SignNowError:
    code: str          # signNow's code when it gave one ("65536", "invalid_client"), else the HTTP status
    message: str       # the readable sentence, ending with "(code)"
    permanent: bool
    raw_message: str = ""


def parse_body(text: str) -> tuple[str, str]:
    """(code, message) from any of the known body shapes; ("", "") when there is nothing to read."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        return "", text.strip()[:200]
    if not isinstance(body, dict):
        return "", ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("code", "")), str(first.get("message", ""))
    if "error" in body:
        err = body["error"]
        if isinstance(err, dict):  # defensive: {"error": {"code", "message"}}
            return str(err.get("code", "")), str(err.get("message", ""))
        code = body.get("code")
        if code not in (None, ""):
            return str(code), str(err)
        # {"error": "invalid_client"} names a code; {"error": "Document not found"} is a sentence.
        err = str(err)
        return (err, err) if err.replace("_", "").isalpha() and " " not in err else ("", err)
    if "message" in body:
        return str(body.get("code", "")), str(body["message"])
    if len(body) == 1:
        key, value = next(iter(body.items()))
        if str(key).isdigit() and isinstance(value, str):
            return str(key), value
    return "", ""


def describe(status: int, text: str) -> SignNowError:
    code, raw = parse_body(text)
    if code in KNOWN:
        sentence, permanent = KNOWN[code]
        sentence = sentence.format(msg=raw.rstrip(".") or "no details")
    else:
        sentence, permanent = (raw.rstrip(".") or f"HTTP {status}"), True
        code = code or str(status)
    if status in TRANSIENT_STATUS:
        permanent = False
    return SignNowError(code=code, message=f"{sentence} ({code})", permanent=permanent, raw_message=raw)


def is_token_error(status: int, text: str) -> bool:
    """401, or a 400/403 that says the bearer token is bad (signNow may answer 1537 with 400)."""
    if status == 401:
        return True
    if status not in (400, 403):
        return False
    code, raw = parse_body(text)
    return code in ("1537", "invalid_token") or raw == "invalid_token"
