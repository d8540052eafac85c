from django.apps import AppConfig


class SigningConfig(AppConfig):
    name = "signing"
    verbose_name = "E-signature providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Django's idiom: models are importable only once apps are loaded, so these imports wait for ready().
        from b24app.signals import register_portal_event  # noqa: PLC0415

        from . import metrics, receivers  # noqa: F401, PLC0415  (connects the signal receivers, the gauges)
        from .events import PORTAL_EVENTS, kedo_status_changed  # noqa: PLC0415

        for name in PORTAL_EVENTS:
            register_portal_event(name, kedo_status_changed)
