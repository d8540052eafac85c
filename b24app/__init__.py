"""b24sign's Django project and its Bitrix24 platform layer (portals, OAuth, REST client, app events)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
