from django.apps import AppConfig


class BizprocExtConfig(AppConfig):
    name = "bizproc_ext"
    verbose_name = "Automation rules (robots)"
    default_auto_field = "django.db.models.BigAutoField"
