"""The robot handler's cheap path (issue 14): its own way past the page middleware, one prepared-once INSERT,
no health-check round trip, the form parsed without a QueryDict, counters written in batches.  Each test
here fails if the shortcut drops a check the long way had.

Personas: portal A's queue server, a stranger naming a host we do not serve.
"""
from __future__ import annotations

import time
from datetime import timedelta
from functools import cache
from urllib.parse import urlencode

import psycopg
import pytest
import redis as redis_lib
from django.core.exceptions import TooManyFieldsSent
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from b24app import forms, metrics
from b24app.forms import clean_text, php_form
from b24app.rest.encoding import parse_php_pairs
from bizproc_ext import models
from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc

URL = "/bizproc/robots/b24sign_send/"


@pytest.mark.django_db
def test_the_one_statement_insert_stores_what_the_orm_stores(portal_a):
    now = timezone.now()
    fields = dict(portal_id=portal_a.db.pk, code="b24sign_send", workflow_id="wf", document_id=["crm", "D", "DEAL_1"],
                  document_type=["crm", "D", "DEAL"], properties={"wait": True, "signer_users": [2]},
                  input_errors=["x: bad"], use_subscription=True, timeout_duration=7, queued_ts=now,
                  auth_user_id=2, auth_access_token="access-" + "a" * 60, auth_refresh_token="refresh-" + "r" * 60,
                  auth_expires_at=now + timedelta(hours=1))
    fast = RobotCall.objects.get(pk=RobotCall.insert(event_token="fast", **fields))
    orm = RobotCall.objects.create(event_token="orm", **fields)
    orm.refresh_from_db()
    skip = {"id", "event_token", "created_at", "updated_at"}
    for f in RobotCall._meta.concrete_fields:
        if f.attname not in skip:
            assert getattr(fast, f.attname) == getattr(orm, f.attname), f.attname
    assert fast.created_at and fast.updated_at and fast.state == RobotCall.QUEUED and fast.published_at is None
    with connection.cursor() as cur:  # the run-as tokens are encrypted at rest, as through the ORM
        cur.execute("SELECT auth_access_token, auth_refresh_token FROM bizproc_ext_robotcall WHERE id = %s", [fast.pk])
        stored = cur.fetchone()
    assert "access-" not in stored[0] and "refresh-" not in stored[1]


def prepared_inserts() -> tuple[int, int]:
    """(robot call INSERTs prepared on this connection, how many times they ran), from PostgreSQL itself."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements "
                    "WHERE statement LIKE %s", ['INSERT INTO "bizproc_ext_robotcall"%'])
        return tuple(cur.fetchone())


@pytest.mark.django_db
def test_the_insert_is_parsed_once_per_connection_then_only_bound(portal_a):
    """The statement is prepared on PostgreSQL at the first call; later calls send only their values."""
    fields = dict(portal_id=portal_a.db.pk, code="b24sign_send", workflow_id="wf", document_id=["crm", "D", "DEAL_1"],
                  document_type=["crm", "D", "DEAL"], properties={"wait": True})
    with CaptureQueriesContext(connection) as log:
        for n in range(3):
            RobotCall.insert(event_token=f"t{n}", **fields)
    assert prepared_inserts() == (1, 3)  # one prepared statement, run three times
    # Django's query log still shows each one (psycopg records the text only when it sends it)
    assert [q["sql"].split(" (")[0] for q in log.captured_queries] == ['INSERT INTO "bizproc_ext_robotcall"'] * 3
    assert RobotCall.objects.filter(event_token__in=["t0", "t1", "t2"]).count() == 3


@pytest.mark.django_db
def test_behind_a_transaction_pooler_the_insert_is_not_prepared(portal_a, monkeypatch):
    """DB_TRANSACTION_POOLING: the next call may reach another server connection, where no statement waits."""
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    monkeypatch.setattr(models, "_insert_statement", cache(lambda alias: models._Insert(connection)))
    before = prepared_inserts()  # an earlier test's statement may remain on this connection
    for n in range(2):
        RobotCall.insert(event_token=f"p{n}", portal_id=portal_a.db.pk, code="b24sign_send", workflow_id="wf",
                         document_id=["crm", "D", "DEAL_1"], document_type=["crm", "D", "DEAL"], properties={})
    assert prepared_inserts() == before  # nothing prepared, nothing prepared run
    assert RobotCall.objects.filter(event_token__in=["p0", "p1"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_call_on_a_connection_postgresql_dropped_is_still_recorded(portal_a, deal, settings):
    """The handler skips Django's per-request SELECT 1 and retries its INSERT on a dead connection instead."""
    settings.ROBOT_PORTAL_CACHE_TTL = 300  # the portal check is cached: the INSERT is the first statement
    first = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    assert first.response_status == 200
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                         password=s.get("PASSWORD") or None, dbname="postgres", autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    time.sleep(0.2)
    second = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    assert second.response_status == 200 and "queued" in second.response_body
    assert set(RobotCall.objects.values_list("event_token", flat=True)) == {first.event_token, second.event_token}


@pytest.mark.django_db
def test_the_handler_url_skips_the_page_middleware_only(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    response = portal_a.emu.post_robot_call(wf)
    assert response.status_code == 200 and RobotCall.objects.count() == 1
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Accept-Language" not in response.get("Vary", "")  # LocaleMiddleware did not run
    assert "X-Frame-Options" not in response  # nor the clickjacking one: a JSON answer to a server


@pytest.mark.django_db
def test_a_host_we_do_not_serve_is_still_refused_on_the_handler_url(portal_a, deal, client):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    response = client.post(URL, urlencode(wf.pairs), content_type="application/x-www-form-urlencoded",
                           HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_plain_http_is_still_redirected_when_ssl_redirect_is_on(portal_a, deal, settings):
    settings.SECURE_SSL_REDIRECT = True
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    response = Client().post(  # a client of its own: SecurityMiddleware reads the setting when it is built
        URL, urlencode(wf.pairs), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_everything_else_takes_the_normal_way(portal_a, client):
    assert client.get(URL).status_code == 405
    assert client.post("/bizproc/robots/b24sign_send/extra/", "a=1",
                       content_type="application/x-www-form-urlencoded").status_code == 404
    assert client.post(URL, "a=1", content_type="application/x-www-form-urlencoded",
                       CONTENT_LENGTH="12abc").status_code == 400  # content_length_guard still runs first


@pytest.mark.parametrize("body", [
    "a=1&a[b]=2&a=3", "k[]=1&x=2&k[]=3", "auth[member_id]=m&auth[member_id]=n&auth=z",
    "p%5Bq%5D=%D0%BF%D1%80%D0%B8&sp=a+b%2Bc", "bad=%zz%C3&%E2%82=%AC", "nul=a%00b&%00k=1", "=v&k&&k2=",
])
def test_a_urlencoded_body_parses_as_through_django_querydict(body, settings):
    request = RequestFactory().post(URL, body, content_type="application/x-www-form-urlencoded")
    reference = RequestFactory().post(URL, body, content_type="application/x-www-form-urlencoded")
    expected = parse_php_pairs([(clean_text(k), clean_text(v)) for k in reference.POST
                                for v in reference.POST.getlist(k)])
    assert php_form(request) == expected


def test_long_field_names_are_parsed_but_never_kept_in_memory():
    """Names are cached per process (the queue server repeats them); a stranger's long ones are not."""
    body = "&".join(f"{'x' * 5000}{i}[k]=v{i}" for i in range(50)) + "&auth%5Bmember_id%5D=m"
    before = len(forms._form_name), len(forms._key_path)
    form = php_form(RequestFactory().post(URL, body, content_type="application/x-www-form-urlencoded"))
    assert form[f"{'x' * 5000}7"] == {"k": "v7"} and form["auth"] == {"member_id": "m"}
    after = len(forms._form_name), len(forms._key_path)
    assert after[0] - before[0] <= 1 and after[1] - before[1] <= 1  # only the short name, if it was new
    assert max(map(len, [*forms._form_name, *forms._key_path])) <= forms.NAME_CACHE_MAX


def test_a_stranger_posting_ever_new_names_never_grows_the_name_cache(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
    for batch in range(3):
        body = "&".join(f"n{batch}x{i}=v" for i in range(1500))
        php_form(RequestFactory().post(URL, body, content_type="application/x-www-form-urlencoded"))
        assert len(forms._form_name) <= forms._form_name.size and len(forms._key_path) <= forms._key_path.size


def test_too_many_fields_are_still_refused(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    request = RequestFactory().post(URL, "&".join(f"f{i}=1" for i in range(11)),
                                    content_type="application/x-www-form-urlencoded")
    with pytest.raises(TooManyFieldsSent):
        php_form(request)


def test_counters_are_buffered_then_written_in_one_batch(settings):
    settings.METRICS_FLUSH_INTERVAL = 0.1
    key = metrics.PREFIX + "b24sign_test_buffered_total"
    raw = redis_lib.Redis.from_url(settings.REDIS_URL)
    for _ in range(3):
        metrics.inc("b24sign_test_buffered_total", robot="r")
    deadline = time.monotonic() + 5  # the process's flusher writes without anyone scraping here
    while not raw.hgetall(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [float(v) for v in raw.hgetall(key).values()] == [3.0]
    metrics.inc("b24sign_test_buffered_total", robot="r")
    assert metrics.read("b24sign_test_buffered_total") == {(("robot", "r"),): 4.0}  # a scrape sees its own


def test_counters_are_written_at_once_with_no_interval(settings):
    settings.METRICS_FLUSH_INTERVAL = 0
    metrics.inc("b24sign_test_direct_total", robot="r")
    raw = redis_lib.Redis.from_url(settings.REDIS_URL)
    assert [float(v) for v in raw.hgetall(metrics.PREFIX + "b24sign_test_direct_total").values()] == [1.0]
