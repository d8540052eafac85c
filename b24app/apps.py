from django.apps import AppConfig


class B24AppConfig(AppConfig):
    name = "b24app"
    verbose_name = "Bitrix24 platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401, PLC0415  (Django's idiom: register the system checks once apps are loaded)
