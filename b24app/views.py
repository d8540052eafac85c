"""Endpoints Bitrix24 itself posts to: the install page and the app-event handler.

Both are CSRF-exempt because Bitrix24 cannot send our CSRF token; each verifies its caller another way
(app.info + user.admin for every token we store, the OAuth server's confirmation for ONAPPUNINSTALL;
see lifecycle.py, trust.py and the Trust section of docs/architecture.md).
"""
from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import metrics as metrics_lib
from .forms import MalformedForm, php_form
from .framing import allow_portal_frame
from .lifecycle import (
    APP_EVENTS,
    Credentials,
    Rejected,
    complete_install,
    handle_app_event,
    handle_portal_event,
    upsert_portal,
)
from .rest import B24Error

log = logging.getLogger("b24sign.views")


@csrf_exempt
@require_POST
def install(request: HttpRequest) -> HttpResponse:
    """The install wizard (spec §1.7): verify, store the portal, register robots, then installFinish()."""
    post, query = request.POST, request.GET
    creds = Credentials(
        member_id=post.get("member_id", ""), access_token=post.get("AUTH_ID", ""),
        refresh_token=post.get("REFRESH_ID", ""), expires_in=_int(post.get("AUTH_EXPIRES"), 3600),
        server_endpoint=post.get("SERVER_ENDPOINT", ""), application_token=post.get("APPLICATION_TOKEN", ""),
        status=post.get("status", ""), scope=post.get("APPLICATION_SCOPE", ""), language=query.get("LANG", ""))
    try:
        portal = upsert_portal(creds)
    except Rejected as exc:
        return render(request, "b24app/install_failed.html", {"message": exc.message}, status=exc.status)
    try:
        robots = complete_install(portal)
        error = ""
    except B24Error as exc:  # e.g. a rate limit or a missing scope: the admin can simply reopen the app
        log.warning("portal %s: install setup failed: %s", portal.member_id, exc)
        robots, error = {}, str(exc)
    response = render(request, "b24app/install.html",
                      {"portal": portal, "robots": robots, "error": error, "lang": portal.language},
                      status=200 if not error else 502)
    return allow_portal_frame(response, portal.domain)


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> HttpResponse:
    """ONAPPINSTALL / ONAPPUPDATE / ONAPPUNINSTALL, plus the portal events upper layers registered (KEDO)."""
    try:
        form = php_form(request)
    except MalformedForm as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    event = str(form.get("event", "")).upper()
    try:
        if event in APP_EVENTS:
            outcome = handle_app_event(event, form)
        else:
            outcome = handle_portal_event(event, form)
    except Rejected as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"status": outcome})


def healthz(request):
    """For the load balancer: the process answers (no database round trip)."""
    return JsonResponse({"status": "ok"})


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def metrics(request):
    """Prometheus exposition (b24app/metrics.py), for a scraper holding ``METRICS_TOKEN`` as a Bearer token.

    Without a configured token the endpoint does not exist (404).  It shows counts by robot, plan, provider
    and status only: no portal, user or secret."""
    expected = settings.METRICS_TOKEN
    if not expected:
        raise Http404()
    given = request.META.get("HTTP_AUTHORIZATION", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        return HttpResponse("metrics token required\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": "Bearer"})
    from prometheus_client import CONTENT_TYPE_LATEST  # noqa: PLC0415  (only the scrape needs it)

    return HttpResponse(metrics_lib.exposition(), content_type=CONTENT_TYPE_LATEST)
