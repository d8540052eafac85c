"""The robot handler as it was before the benchmark's changes, for before/after runs in one go
(``B24SIGN_BENCH_BEFORE=1``, bench processes only): BEGIN/INSERT/COMMIT around the insert, and the
portal loaded whole (its encrypted token columns decrypted) for every call."""
from django.db import transaction


def apply() -> None:
    from bizproc_ext import views
    from bizproc_ext.models import RobotCall

    def atomic_record(**fields):
        with transaction.atomic():
            return RobotCall.objects.create(**fields)

    full_portal = views.verified_portal
    views._record = atomic_record
    views.verified_portal = lambda form, only=(): full_portal(form)
