"""The robot handler as it was before the benchmarks' changes, for before/after runs in one go
(``B24SIGN_BENCH_BEFORE=1``, bench processes only): BEGIN/INSERT/COMMIT around the insert, the portal
loaded whole (its encrypted token columns decrypted) for every call, and the Celery task published from
the request (``delay()`` on commit) instead of by the drainer."""
from django.db import transaction


def apply() -> None:
    from b24app.lifecycle import verified_portal
    from bizproc_ext import views
    from bizproc_ext.models import RobotCall
    from bizproc_ext.tasks import process_robot_call

    def atomic_record(**fields):
        with transaction.atomic():
            row = RobotCall.objects.create(**fields)
        RobotCall.objects.filter(pk=row.pk).update(published_at=row.created_at)
        process_robot_call.delay(row.pk)
        return row

    views._record = atomic_record
    views.verified_portal_id = lambda form: verified_portal(form).pk
