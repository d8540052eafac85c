"""The REST client against the emulated portal: refresh, rate limits, batch, renames, typed errors."""
import threading
import time

import pytest
from django.db import connection

from b24app.models import Portal
from b24app.rest import B24Client, B24Error, NeedsReinstall
from b24app.rest.coalesce import batch_each


def _threads(n, fn):
    errors, results = [], []

    def run():
        try:
            results.append(fn())
        except Exception as exc:  # collected and asserted on by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_twenty_workers_with_an_expired_token_refresh_exactly_once(portal_a, cloud):
    portal_a.emu.expire_access_tokens()
    cloud.oauth_delay = 0.3  # widen the race window
    refreshes_before = cloud.refresh_calls
    version_before = portal_a.db.token_version

    results, errors = _threads(20, lambda: B24Client(Portal.objects.get(pk=portal_a.db.pk)).call("profile"))

    assert errors == []
    assert len(results) == 20 and all(r["ID"] for r in results)
    assert cloud.refresh_calls - refreshes_before == 1
    assert portal_a.db.token_version == version_before + 1


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_200_calls_stays_inside_the_portal_bucket(portal_a, settings):
    settings.B24_MAX_INLINE_WAIT = 60
    Portal.objects.filter(pk=portal_a.db.pk).update(rate_burst=50, rate_drain=20)  # the emulated plan
    rejected_before = portal_a.emu.stats.rejected_503

    results, errors = _threads(10, lambda: [B24Client(Portal.objects.get(pk=portal_a.db.pk)).call("profile")
                                            for _ in range(20)])

    assert errors == []
    assert sum(len(r) for r in results) == 200
    assert portal_a.emu.stats.rejected_503 == rejected_before  # never pushed over the portal's limit
    assert portal_a.emu.stats.max_bucket_level <= 50


@pytest.mark.django_db
def test_query_limit_exceeded_from_the_portal_is_retried_not_surfaced(portal_a):
    portal_a.emu.fail_next(3, status=503, error="QUERY_LIMIT_EXCEEDED")
    assert B24Client(portal_a.db).call("profile")["ID"]


@pytest.mark.django_db
def test_batch_of_120_commands_goes_out_as_3_requests(portal_a):
    requests_before = portal_a.emu.stats.requests
    calls = {f"u{i}": ("user.get", {"filter": {"ID": [1]}}) for i in range(120)}
    result = B24Client(portal_a.db).batch(calls)
    assert result.requests == 3
    assert portal_a.emu.stats.requests - requests_before == 3
    assert len(result.results) == 120 and not result.errors
    assert result.results["u119"][0]["ID"] in ("1", 1)


@pytest.mark.django_db
def test_batch_result_references_resolve_within_a_chunk(portal_a):
    deal = portal_a.emu.crm.add_deal("Referenced deal", assigned_by_id=1)
    result = B24Client(portal_a.db).batch({
        "deal": ("crm.deal.get", {"id": deal}),
        "owner": ("user.get", {"filter": {"ID": "$result[deal][ASSIGNED_BY_ID]"}}),
    })
    assert result.results["owner"][0]["ID"] in ("1", 1)


@pytest.mark.django_db
def test_independent_batches_are_packed_into_shared_requests_each_with_its_own_results(portal_a):
    """batch_each (the CRM card's cards of one portal): whole batches per request, references and errors
    kept per batch, 50 commands at most per request."""
    deal = portal_a.emu.crm.add_deal("Referenced deal", assigned_by_id=1)
    one = {"deal": ("crm.deal.get", {"id": deal}),
           "owner": ("user.get", {"filter": {"ID": "$result[deal][ASSIGNED_BY_ID]"}})}
    broken = {"deal": ("crm.deal.get", {"id": 999999})}
    fill = {f"u{i}": ("user.get", {"filter": {"ID": [1]}}) for i in range(46)}
    before = portal_a.emu.stats.requests
    results = batch_each(B24Client(portal_a.db), [one, broken, one, fill])
    assert portal_a.emu.stats.requests - before == 2  # 5 commands, then 46 that do not fit: never split
    assert [r.results["owner"][0]["ID"] in ("1", 1) for r in (results[0], results[2])] == [True, True]
    assert "deal" in results[1].errors and not results[0].errors and not results[2].errors
    assert len(results[3].results) == 46 and not results[3].errors


@pytest.mark.django_db
def test_errors_carry_bitrix24_code_and_description(portal_a):
    with pytest.raises(B24Error) as info:
        B24Client(portal_a.db).call("bizproc.event.send", {"EVENT_TOKEN": "forged|token|x.y"})
    assert info.value.error == "ACCESS_DENIED"
    assert info.value.permanent
    assert "bizproc.event.send" in str(info.value)


@pytest.mark.django_db
def test_an_error_without_a_code_keeps_its_description_and_is_named_by_method_and_text(portal_a):
    """The core's RestExceptions often answer ``{"error": "", "error_description": "..."}`` with HTTP 400."""
    with pytest.raises(B24Error) as info:
        B24Client(portal_a.db).call("sign.b2e.document.get", {"uid": "deleted-uid"})
    assert (info.value.error, info.value.description, info.value.status) == ("NOT_FOUND", "Document not found.", 400)
    assert info.value.permanent  # polling a deleted document again cannot help


@pytest.mark.django_db
def test_a_renamed_portal_is_followed_and_remembered(portal_a):
    old_domain = portal_a.db.domain
    new_domain = portal_a.emu.rename()
    assert B24Client(portal_a.db).call("profile")["ID"]
    portal = portal_a.db
    assert portal.domain == new_domain != old_domain
    assert new_domain in portal.client_endpoint


@pytest.mark.django_db
def test_operation_time_limit_pauses_the_method_until_reset(portal_a, settings):
    settings.B24_MAX_INLINE_WAIT = 0.5
    portal_a.emu.fail_next(1, status=429, error="OPERATION_TIME_LIMIT")
    started = time.monotonic()
    with pytest.raises(B24Error) as info:
        B24Client(portal_a.db).call("profile")
    assert info.value.error == "OPERATION_TIME_LIMIT" and info.value.retry_after
    assert time.monotonic() - started < 5
    # other methods are not blocked
    assert B24Client(portal_a.db).call("user.current")["ID"]


@pytest.mark.django_db
def test_a_rejected_refresh_token_marks_the_portal_for_reinstall(portal_a, cloud):
    portal_a.emu.expire_access_tokens()
    Portal.objects.filter(pk=portal_a.db.pk).update(refresh_token="not-a-valid-refresh-token")
    with pytest.raises(NeedsReinstall):
        B24Client(portal_a.db).call("profile")
    assert portal_a.db.needs_reinstall


@pytest.mark.django_db
def test_portals_idle_for_20_days_get_one_refresh_and_busy_ones_none(portal_a, portal_b, cloud):
    from datetime import timedelta

    from django.utils import timezone

    from b24app.tasks import refresh_idle_portals

    Portal.objects.filter(pk=portal_a.db.pk).update(token_expires_at=timezone.now() - timedelta(days=21))
    before = cloud.refresh_calls
    assert refresh_idle_portals() == 1
    assert cloud.refresh_calls - before == 1
    assert portal_a.db.token_expires_at > timezone.now()
    assert refresh_idle_portals() == 0
