"""The queue server's robot calls, from the WSGI server straight to the handler (issue 14).

Under gunicorn (and runserver: both load ``config.wsgi.application``) a POST to ``<handler prefix><code>/``
with a numeric Content-Length does not enter Django's request cycle: no ``request_started`` /
``request_finished`` signals, no middleware chain, no response closers.  Measured, that cycle was a fifth of
the handler's CPU (BENCHMARKS.md).  What the cycle does that matters here is kept: the request is Django's
own ``WSGIRequest``; what ``bizproc_ext.middleware.answer`` applies (ALLOWED_HOSTS, the default language,
nosniff) applies, and so does the Content-Length CommonMiddleware would set; an exception becomes the
response Django gives it (``response_for_exception``: 400 for a bad Host, a logged 500 otherwise); and the
database connections are looked after as ``request_finished`` would (``close_old_connections``: CONN_MAX_AGE,
a connection left broken).  Everything else (a GET, another path, a non-numeric Content-Length, plain http
under SECURE_SSL_REDIRECT) goes to Django unchanged.
"""
from __future__ import annotations

from django import db
from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.utils import translation

from .middleware import answer, handler_prefix, robot_code


def robot_calls_first(django_application):
    warm_up()
    def application(environ, start_response):
        request, code = _robot_call(environ)
        if code is None:
            return django_application(environ, start_response)
        try:
            response = answer(request, code)
        except Exception as exc:  # noqa: BLE001  (what Django's handler makes of any exception)
            response = response_for_exception(request, exc)
        finally:
            db.close_old_connections()
        content = response.content
        # What CommonMiddleware would add: without a length gunicorn chunks the answer (three writes, not two).
        if "Content-Length" not in response:
            response["Content-Length"] = str(len(content))
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return [content]
    return application


def warm_up() -> None:
    """What a worker's first request would otherwise load while calls queue behind it (≈ 90 ms of CPU, most
    of it importing and compiling the URLconf; the handler's p99 under load was these first calls)."""
    handler_prefix(settings.ROOT_URLCONF)  # the URLconf, its views and their regexes
    with translation.override(settings.LANGUAGE_CODE):  # the default language's catalogs
        pass


def _robot_call(environ) -> tuple[WSGIRequest | None, str | None]:
    """(the request, its robot code) for a robot call to take this way, else (None, None)."""
    length = environ.get("CONTENT_LENGTH", "")
    if environ.get("REQUEST_METHOD") != "POST" or not (length.isascii() and length.isdigit()):
        return None, None  # a missing or odd length: Django's way (b24app.middleware.content_length_guard)
    if not environ.get("PATH_INFO", "").startswith(handler_prefix(settings.ROOT_URLCONF)):
        return None, None
    request = WSGIRequest(environ)
    return request, robot_code(request)
