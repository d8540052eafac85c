"""System checks for settings that only matter in production."""
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_b24sign_deploy(app_configs, **kwargs):
    problems = []
    if not settings.FIELD_ENCRYPTION_KEYS:
        problems.append(Error("FIELD_ENCRYPTION_KEYS is empty: secrets would be encrypted with a key "
                              "derived from SECRET_KEY.", id="b24sign.E001"))
    if settings.ALLOW_HTTP_PORTALS:
        problems.append(Error("ALLOW_HTTP_PORTALS is on: only for tests and demos.", id="b24sign.E002"))
    if settings.FETCH_PRIVATE_HOSTS:
        problems.append(Error("FETCH_PRIVATE_HOSTS is set: links could reach private addresses.", id="b24sign.E003"))
    if not settings.APP_BASE_URL.startswith("https://"):
        problems.append(Warning("APP_BASE_URL is not https: Bitrix24 portals will refuse http handlers.",
                                id="b24sign.W001"))
    return problems
