from django.apps import AppConfig


class BizprocExtConfig(AppConfig):
    name = "bizproc_ext"
    verbose_name = "Automation rules (robots)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import drainer, metrics, receivers  # noqa: F401, PLC0415  (Django's idiom: connect receivers once apps are loaded)
