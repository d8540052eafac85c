"""Which e-signature providers exist: code -> label and the dotted path of its Provider class.

Adding a provider touches this list and its own folder under signing/providers/ (see CONTRIBUTING.md).
Model choices, the robot's provider picker and the settings UI derive from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class ProviderInfo:
    code: str
    label: str
    path: str
    via_robot: str = "send"  # which robot sends with it: "send" (generic) or "kedo" (HR documents)


PROVIDERS: dict[str, ProviderInfo] = {
    p.code: p for p in [
        ProviderInfo("signnow", "signNow", "signing.providers.signnow.provider.SignNowProvider"),
        ProviderInfo("evia", "Evia Sign", "signing.providers.evia.provider.EviaProvider"),
        ProviderInfo("b24kedo", "Bitrix24 Sign (HR documents)", "signing.providers.b24kedo.provider.KedoProvider",
                     via_robot="kedo"),
    ]
}


def all_providers() -> dict[str, ProviderInfo]:
    """The built-in providers plus any named in settings.SIGNING_EXTRA_PROVIDERS (tests use this)."""
    extra = getattr(settings, "SIGNING_EXTRA_PROVIDERS", {}) or {}
    return {**PROVIDERS, **{code: ProviderInfo(code, label, path) for code, (label, path) in extra.items()}}


def choices() -> list[tuple[str, str]]:
    return [(p.code, p.label) for p in all_providers().values()]


@lru_cache(maxsize=32)
def _load(path: str):
    return import_string(path)


def provider_class(code: str):
    info = all_providers().get(code)
    if info is None:
        raise KeyError(f"unknown provider {code!r}")
    return _load(info.path)
