"""Property-based fuzzing of everything that parses what strangers send us.

The robot handler's form parsing and the view itself (random bracketed keys and values: never a 500,
never a recorded call without valid auth), and the providers' webhook parsers (random bodies and
headers: WebhookRejected or events, never another exception).
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from b24app.rest.encoding import parse_php_pairs
from bizproc_ext.models import RobotCall
from bizproc_ext.parsing import MalformedCall, envelope, typed_properties
from bizproc_ext.robots import catalogue
from signing.base import WebhookEvent, WebhookRejected
from signing.providers.evia.webhooks import parse_callback
from signing.providers.signnow import webhooks as signnow_webhooks

EXAMPLES = hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------------
names = st.sampled_from(["code", "workflow_id", "event_token", "document_id", "document_type", "auth", "ts",
                         "properties", "use_subscription", "timeout_duration", "member_id", "application_token",
                         "0", "1", "", "[", "]", "a[b", "x]"]) | st.text(max_size=12)
segments = st.lists(st.sampled_from(["", "0", "1", "2", "member_id", "application_token", "signer_emails",
                                     "wait", "[", "]"]) | st.text(max_size=6), max_size=4)
keys = st.builds(lambda head, parts: head + "".join(f"[{p}]" for p in parts), names, segments)
values = st.text(max_size=40) | st.sampled_from(["Y", "N", "user_1", "group_2", "2026-01-31", "1e400", "-1",
                                                  "99999999999999999999", "\x00", "%00", "DEAL_1"])
pairs = st.lists(st.tuples(keys, values), max_size=25)


@EXAMPLES
@given(pairs)
def test_parse_php_pairs_never_fails(items):
    assert isinstance(parse_php_pairs(items), dict)


@EXAMPLES
@given(pairs, st.sampled_from(sorted(catalogue())))
def test_envelope_and_typed_properties_accept_or_refuse_cleanly(items, code):
    form = parse_php_pairs(items)
    try:
        call = envelope(form, code)
    except MalformedCall:
        return
    values, errors = typed_properties(catalogue()[code], call.raw_properties)
    assert isinstance(values, dict) and all(isinstance(e, str) for e in errors)


# --- the view, through Django's test client --------------------------------------------------------
@pytest.fixture
def valid_call(portal_a, deal):
    """The pairs of one genuine robot call on portal A (not delivered)."""
    from tests.robots.helpers import SEND_PROPS, deal_doc

    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    return wf.pairs


@pytest.mark.django_db
@EXAMPLES
@given(noise=pairs, keep=st.lists(st.sampled_from([True] * 9 + [False]), min_size=40, max_size=40), token=st.uuids(), mode=st.integers(0, 2))
def test_the_robot_handler_never_answers_500_nor_records_without_valid_auth(client, valid_call, noise, keep, token,
                                                                            mode):
    # mode 0: pure noise; 1: a real call with fields dropped and noise added; 2: the same with forged auth
    base = [] if mode == 0 else [p for p, k in zip(valid_call, keep + [True] * len(valid_call)) if k]
    body = [(k, f"{v}-{token.hex}" if k == "event_token" else v) for k, v in base] + noise
    if mode == 2:
        body = [(k, "f" * 32 if k.startswith("auth[application_token]") else v) for k, v in body]
    before = RobotCall.objects.count()
    response = client.post("/bizproc/robots/b24sign_send/", urlencode(body),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500
    created = RobotCall.objects.count() - before
    if created:
        form = parse_php_pairs(body)
        auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
        real = dict(valid_call)
        assert mode == 1 and response.status_code == 200
        assert auth.get("member_id") == real["auth[member_id]"]
        assert auth.get("application_token") == real["auth[application_token]"]


# --- the shapes of issue 11 (item 7), through the real handler on PostgreSQL ---------------------------
huge_ints = st.integers(min_value=-(2**70), max_value=2**70).map(str) | st.sampled_from(
    ["3000000000", "2147483648", "2147483647", "-1", "-2147483649", "0", "1e9", "١٢٣", "\x001", "1\x00"])
nul_text = st.text(max_size=12).map(lambda t: t + "\x00") | st.text(max_size=12).map(lambda t: "\x00" + t + "\x00")
INT_FIELDS = ["auth[user_id]", "timeout_duration", "ts", "auth[expires_in]", "properties[expiry_days]",
              "properties[reminder_days]"]
mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(INT_FIELDS), huge_ints),
    st.tuples(st.just("set"), st.sampled_from(["properties[subject]", "properties[message]", "properties[signer_emails]",
                                                "workflow_id", "auth[domain]", "document_type[2]"]), nul_text),
    st.tuples(st.just("nul_key"), st.sampled_from(["properties[message]", "properties[x]", "auth[user_id]"]), nul_text),
    st.tuples(st.just("deep"), st.sampled_from(["document_id[0]", "properties[subject]", "auth"]),
              st.integers(1, 3000).map(str)),
)


def _mutate(pairs, op, key, value):
    if op == "set":
        return [(k, v) for k, v in pairs if k != key] + [(key, value)]
    if op == "nul_key":
        return pairs + [(key.replace("]", "\x00]", 1), value)]
    depth = int(value)
    return pairs + [(key + "[a]" * depth, "x")]


@pytest.mark.django_db
@EXAMPLES
@given(mutations=st.lists(mutation, min_size=1, max_size=3), token=st.uuids())
def test_bad_shapes_are_refused_or_stored_never_lost_or_dropped(client, valid_call, mutations, token):
    """A real call with its values made hostile: a 4xx with nothing stored, or exactly one stored row
    (sanitized) and "queued"; "duplicate" only when the same event token is already stored."""
    body = [(k, f"{v}-{token.hex}" if k == "event_token" else v) for k, v in valid_call]
    for op, key, value in mutations:
        body = _mutate(body, op, key, value)
    event_token = dict(body)["event_token"].replace("\x00", "")
    before = RobotCall.objects.filter(event_token=event_token).count()
    response = client.post("/bizproc/robots/b24sign_send/", urlencode(body),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500
    after = RobotCall.objects.filter(event_token=event_token).count()
    if response.status_code >= 400:
        assert after == before
        return
    status = response.json()["status"]
    assert status in ("queued", "duplicate")
    if status == "queued":
        assert after == before + 1
        call = RobotCall.objects.get(event_token=event_token)
        assert "\x00" not in json.dumps(call.properties) + call.workflow_id
        assert call.auth_user_id is None or 0 < call.auth_user_id < 2**31
    else:
        assert before == 1 and after == 1


@pytest.mark.django_db
@EXAMPLES
@given(event=st.sampled_from(["ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL", "ONSIGNB2EDOCUMENTSTATUSCHANGED", "X"]),
       noise=pairs, auth=st.one_of(st.just([("auth", "x")]), st.lists(st.tuples(
           st.sampled_from(["auth[expires_in]", "auth[expires]", "auth[user_id]", "auth[member_id]", "auth[access_token]",
                            "auth[domain]", "auth[application_token]", "auth[server_endpoint]", "data[CLEAN]"]),
           huge_ints | nul_text | st.just("abc")), max_size=5)))
def test_app_events_never_answer_500(client, portal_a, event, noise, auth):
    body = [("event", event)] + auth + noise
    response = client.post("/b24/events/", urlencode(body), content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500
    portal_a.db.refresh_from_db()
    assert portal_a.db.is_installed  # nothing here carries the portal's application token


@pytest.mark.django_db
@EXAMPLES
@given(length=st.text(max_size=8), path=st.sampled_from(["/bizproc/robots/b24sign_send/", "/b24/events/",
                                                         "/b24/install/", "/app/"]))
def test_any_content_length_header_never_answers_500(client, valid_call, length, path):
    response = client.post(path, urlencode(valid_call), content_type="application/x-www-form-urlencoded",
                           CONTENT_LENGTH=length)
    assert response.status_code < 500


# --- provider webhooks -------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                        max_size=5), max_leaves=20)
signnow_like = st.fixed_dictionaries({}, optional={
    "meta": st.dictionaries(st.sampled_from(["event", "timestamp", "initiator_id", "access_token"]), json_values)
    | json_values,
    "content": st.dictionaries(st.sampled_from(["document_id", "user_id", "document_name"]), json_values)
    | json_values,
})
evia_item = st.fixed_dictionaries({}, optional={
    "RequestId": json_values, "requestid": json_values, "EventId": json_values, "EventTime": json_values,
    "Email": json_values, "EventDescription": json_values,
    "Documents": st.lists(st.fixed_dictionaries({}, optional={"DocumentName": json_values,
                                                               "DocumentContent": json_values}), max_size=2)
    | json_values,
})
bodies = st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
header_names = st.sampled_from(["x-signnow-signature", "X-SignNow-Signature", "x-b24sign-token", "X-B24Sign-Token",
                                "content-type"]) | st.text(max_size=10)
headers = st.dictionaries(header_names, st.text(max_size=70), max_size=4)
CREDS = {"webhook_hmac_secret": "s3cret", "webhook_header_token": "tok"}


def _sign(body: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


@EXAMPLES
@given(body=bodies | signnow_like.map(lambda v: json.dumps(v).encode()), hdrs=headers,
       signed=st.booleans(), creds=st.sampled_from([CREDS, {}, {"webhook_hmac_secret": ""}]))
def test_signnow_webhook_parser_rejects_or_parses(body, hdrs, signed, creds):
    if signed:
        hdrs = {**hdrs, "X-SignNow-Signature": _sign(body)}
    try:
        events = signnow_webhooks.parse(body, hdrs, creds)
    except WebhookRejected:
        return
    assert events and all(isinstance(e, WebhookEvent) and e.external_id for e in events)


@EXAMPLES
@given(body=bodies | evia_item.map(lambda v: json.dumps(v).encode())
       | st.lists(evia_item, max_size=3).map(lambda v: json.dumps(v).encode()))
def test_evia_webhook_parser_rejects_or_parses(body):
    try:
        events = parse_callback(body)
    except WebhookRejected:
        return
    assert events and all(isinstance(e, WebhookEvent) and e.external_id for e in events)
