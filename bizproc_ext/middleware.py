"""The robot handler's own way through Django (issue 14): the queue server's POSTs skip the page middleware.

Placed right after ``b24app.middleware.content_length_guard``.  A POST to the handler URL is passed straight
to the view, without URL resolution and without the middleware that only matters for pages a browser shows:
CSRF (the view is exempt: the queue server has no cookie), locale (the handler's answers are not
translated; the default language is activated, which is what the queue server got before, as it sends no
Accept-Language), clickjacking and the browser policy headers (a JSON answer to a server is never framed or
navigated).  What still applies to the handler is kept: the Host header is checked against ALLOWED_HOSTS
(``get_host()``, as CommonMiddleware did), a plain-http call under SECURE_SSL_REDIRECT takes the normal
path (and its redirect), and nosniff is set.  The view keeps every check of its own (token, portal, size,
shape).  Anything that is not exactly ``POST <handler prefix><code>/`` goes the normal way.
Decision and measurements: docs/decisions.md, BENCHMARKS.md.
"""
from __future__ import annotations

from functools import cache

from django.conf import settings
from django.urls import get_resolver
from django.utils import translation

from .views import robot_handler


@cache
def handler_prefix(urlconf: str) -> str:
    """``/bizproc/robots/`` (wherever config/urls.py mounts bizproc_ext), from the URL named robot-handler."""
    path = "/" + get_resolver(urlconf).reverse("robot-handler", code="0")
    return path[: -len("0/")]


def robot_code(request) -> str | None:
    """The robot code of a queue-server POST to ``<handler prefix><code>/``, else None (the normal way)."""
    if request.method != "POST" or (settings.SECURE_SSL_REDIRECT and not request.is_secure()):
        return None
    prefix = handler_prefix(getattr(request, "urlconf", None) or settings.ROOT_URLCONF)
    path = request.path_info
    if path.startswith(prefix) and path.endswith("/"):
        code = path[len(prefix):-1]
        if code and "/" not in code:  # what <str:code> matches
            return code
    return None


def answer(request, code: str):
    """The handler's answer, with what still applies to it of the page middleware."""
    request.get_host()  # ALLOWED_HOSTS: DisallowedHost -> 400, as through CommonMiddleware
    translation.activate(settings.LANGUAGE_CODE)
    response = robot_handler(request, code)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def robot_fast_path(get_response):
    """Inside Django (the test client; bizproc_ext/wsgi.py takes the same calls before Django under a WSGI
    server)."""
    def middleware(request):
        code = robot_code(request)
        return answer(request, code) if code else get_response(request)
    return middleware
