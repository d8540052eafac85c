"""Root URLs: each layer mounts its own."""
from django.conf import settings
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("", include("b24app.urls")),        # install page, app and portal events, health check
    path("bizproc/", include("bizproc_ext.urls")),
    path("signing/", include("signing.urls")),
    path("", include("pages.urls")),         # /app/ and the placements
]


def collected_static(request, path):
    """Two small files (app.css, app.js) collected into STATIC_ROOT, served by gunicorn itself so the
    docker-compose shape needs no extra web server; a fronting proxy may serve /static/ instead."""
    return serve(request, path, document_root=settings.STATIC_ROOT)


if not settings.DEBUG:
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", collected_static))
