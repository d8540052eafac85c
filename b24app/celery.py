"""The Celery app: ``celery -A b24app worker`` / ``celery -A b24app beat``."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24app.settings")

app = Celery("b24sign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
