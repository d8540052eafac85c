"""``manage.py drain_robot_calls``: publish recorded robot calls to Celery until stopped (SIGTERM/SIGINT).

Every Celery worker starts one beside itself (bizproc_ext/drainer.py); run it on its own with
``ROBOT_CALL_DRAINER=0`` on the workers if you prefer a separate service.  Any number may run at once.
"""
import signal

from django.core.management.base import BaseCommand

from bizproc_ext.drainer import Drainer


class Command(BaseCommand):
    help = "Publish committed, unpublished robot calls to the Celery broker, in batches, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=None, help="seconds between idle rounds")

    def handle(self, *args, interval=None, **options):
        drainer = Drainer(interval)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: drainer.stop())
        drainer.run()
