from django.apps import AppConfig


class CrmCardConfig(AppConfig):
    name = "crmcard"
    verbose_name = "CRM card (tab, timeline card, fields, triggers, notifications)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import receivers  # noqa: F401, PLC0415  (Django's idiom: connect receivers once apps are loaded)
