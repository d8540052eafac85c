"""Which Bitrix24 scope each feature needs, so the settings page can name what a missing grant disables."""
from __future__ import annotations

from django.utils.translation import gettext as _

from signing.registry import all_providers, provider_class


def _features() -> list[tuple[str, frozenset[str]]]:
    features = [
        (_("automation rules (registering the robots, answering workflows)"), frozenset({"bizproc"})),
        (_("reading deals, contacts and their files; the signed copy on the timeline"), frozenset({"crm"})),
        (_("employees as signers"), frozenset({"user_basic"})),
        (_("documents from Bitrix24 Drive"), frozenset({"disk"})),
        (_("documents from the document generator"), frozenset({"documentgenerator"})),
        (_("the robot settings form"), frozenset({"placement"})),
        (_("the CRM card's status fields on smart processes and smart invoices"), frozenset({"userfieldconfig"})),
        (_("notifications to the responsible user and to administrators"), frozenset({"im"})),
    ]
    for code, info in all_providers().items():
        needed = provider_class(code).required_scopes
        if needed:
            features.append((info.label, frozenset(needed)))
    return features


def missing_scopes(portal) -> list[dict]:
    """``[{scope, disables: [feature, …]}]`` for every scope a feature needs and the portal did not grant."""
    out: dict[str, list[str]] = {}
    for feature, needed in _features():
        for scope in portal.missing_scopes(needed):
            out.setdefault(scope, []).append(feature)
    return [{"scope": scope, "disables": features} for scope, features in sorted(out.items())]
