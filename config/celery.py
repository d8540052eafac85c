"""The Celery app: ``celery -A config worker`` / ``celery -A config beat``."""
import os
import sys

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("b24sign")
app.config_from_object("django.conf:settings", namespace="CELERY")

# --- a Celery thread's database connection ---------------------------------------------------------------
# Celery's Django fixup closes every connection of the task's thread before and after each task unless
# CELERY_DB_REUSE_MAX is set (it reads exactly that key from app.conf, checked; it then closes once every
# 2 x that many task signals, i.e. never): a PostgreSQL backend started per task (docs/decisions.md, 2026-12-02).
# Instead a thread keeps its connection across tasks as Django keeps one across requests: before and after
# each task, close_old_connections() drops one that is broken, errored or older than CONN_MAX_AGE (the next
# use health-checks it, CONN_HEALTH_CHECKS).  Bound: an idle thread (or prefork child) holds one connection,
# so a worker process holds at most its --concurrency (docker-compose 8, make run 2) besides its job threads'.
app.conf["CELERY_DB_REUSE_MAX"] = sys.maxsize


@task_prerun.connect
@task_postrun.connect
def _connection_around_task(sender, **_) -> None:
    if not getattr(sender.request, "is_eager", False):  # an eager task runs inside its caller (a test's transaction)
        close_old_connections()


app.autodiscover_tasks()
