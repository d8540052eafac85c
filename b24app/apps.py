from django.apps import AppConfig


class B24AppConfig(AppConfig):
    name = "b24app"
    verbose_name = "Bitrix24 platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
