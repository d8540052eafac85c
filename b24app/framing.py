"""Pages that Bitrix24 shows in its frame may be framed by that portal only.

Django keeps ``X-Frame-Options: DENY`` for everything; a frame view opts out of it and sends a CSP
``frame-ancestors`` naming the verified portal (Bitrix24's advice: never lift framing site-wide).
"""
from __future__ import annotations

from functools import wraps

from django.conf import settings


def frame_ancestors(domain: str | None) -> str:
    sources = ["'self'"]
    if domain:
        sources += [f"https://{domain}"]
        if settings.ALLOW_HTTP_PORTALS:
            sources += [f"http://{domain}"]
    return "frame-ancestors " + " ".join(sources)


def allow_portal_frame(response, domain: str | None):
    """Mark ``response`` frameable by ``domain`` (None: by nobody but us)."""
    response["Content-Security-Policy"] = frame_ancestors(domain)
    response.xframe_options_exempt = True
    return response


def portal_frame(view):
    """Decorator for frame views that set ``request.portal`` themselves; failures stay DENY-framed."""
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        portal = getattr(request, "portal", None)
        if portal is not None and response.status_code < 400:
            allow_portal_frame(response, portal.domain)
        return response

    return wrapped
