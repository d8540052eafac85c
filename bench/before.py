"""The robot handler as it was before the benchmarks' changes, for before/after runs in one go
(``B24SIGN_BENCH_BEFORE=1``, bench processes only): BEGIN/INSERT/COMMIT around the insert, the portal
loaded whole (its encrypted token columns decrypted) for every call, and the Celery task published from
the request (``delay()`` on commit) instead of by the drainer.  Also as before issue 14's handler work:
every page middleware on the handler URL, the form read through ``request.POST`` (a QueryDict), Django's
health check (SELECT 1) on every request, one Redis write per counted metric."""
from django.conf import settings
from django.db import transaction


def apply() -> None:
    from b24app.forms import clean_text
    from b24app.lifecycle import verified_portal
    from b24app.rest.encoding import parse_php_pairs
    from bizproc_ext import views
    from bizproc_ext.models import RobotCall
    from bizproc_ext.tasks import process_robot_call

    def atomic_record(**fields):
        with transaction.atomic():
            row = RobotCall.objects.create(**fields)
        RobotCall.objects.filter(pk=row.pk).update(published_at=row.created_at)
        process_robot_call.delay(row.pk)
        return row

    def querydict_form(request):
        pairs = [(clean_text(k), clean_text(v)) for k in request.POST for v in request.POST.getlist(k)]
        return parse_php_pairs(pairs)

    views._record = atomic_record
    views.verified_portal_id = lambda form: verified_portal(form).pk
    views.php_form = querydict_form
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "bizproc_ext.middleware.robot_fast_path"]
    settings.METRICS_FLUSH_INTERVAL = 0
