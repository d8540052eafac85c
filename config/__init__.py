"""The Django project's wiring: settings, root URLs, WSGI and the Celery app.  It may import every
layer; no layer imports it (``.importlinter``)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
