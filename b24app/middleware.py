"""Request guards that must run before anything reads the body."""
from __future__ import annotations

from django.http import JsonResponse


def content_length_guard(get_response):
    """A non-numeric ``Content-Length`` makes Django's ``request.body`` raise ValueError (a 500 under
    runserver, where no proxy in front refuses it first): refuse it with 400 instead."""
    def middleware(request):
        length = request.META.get("CONTENT_LENGTH")
        # isascii(): "²".isdigit() is true, but int("²") raises (found by tests/reliability/test_fuzz_parsers.py)
        if length not in (None, "") and not (str(length).strip().isascii() and str(length).strip().isdigit()):
            return JsonResponse({"error": "invalid Content-Length"}, status=400)
        return get_response(request)
    return middleware
