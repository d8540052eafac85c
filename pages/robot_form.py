"""The send robot's settings as a form, shared by the robot settings slider (``robot_settings.py``) and the CRM
card's send form (``card_send.py``): one way to turn the catalogue's properties into controls, one way to list
the choices (document generator templates, provider templates), one check of a Drive file.

The two pages differ only in where values go (``setPropertyValue`` in the slider, a POST into the robot-call
outbox from the card) and in which properties they show; the controls are ``templates/pages/_robot_choice.html``.
"""
from __future__ import annotations

from django.utils.translation import gettext as _

from b24app.rest import B24Client, B24Error
from bizproc_ext import sources
from bizproc_ext.robots import Robot
from signing.base import ProviderError
from signing.registry import all_providers


def prop_rows(robot: Robot, values: dict, lang: str, keys=None, choices: dict | None = None) -> list[dict]:
    """One row per property (``keys``: which ones, in order; all by default), with its current value and, where
    the page can offer them, its choices (``choices[key]``: a list the choice template renders)."""
    rows = []
    for key in keys or robot.properties:
        prop = robot.properties[key]
        value = values.get(key, prop.default if prop.default is not None else "")
        if prop.multiple:
            value = value if isinstance(value, list) else [v for v in [value] if v]
        rows.append({
            "key": key, "label": prop.name.get(lang) or prop.name["en"], "type": prop.type,
            "multiple": prop.multiple, "required": prop.required, "value": "" if value is None else value,
            "options": [(k, v.get(lang) or v["en"]) for k, v in (prop.options or {}).items()],
            "description": (prop.description.get(lang) or prop.description["en"]) if prop.description else "",
            "choices": (choices or {}).get(key) or None,
        })
        if prop.multiple:
            rows[-1]["text"] = "\n".join(str(v) for v in value)
    return rows


def provider_choices(accounts) -> list[tuple[str, str, bool]]:
    """(code, label, is default) of the connected accounts the send robot can use (KEDO has its own robot)."""
    labels = all_providers()
    return [(a.provider, labels[a.provider].label if a.provider in labels else a.provider, a.is_default)
            for a in accounts if a.provider in labels and labels[a.provider].via_robot == "send"]


def template_choices(portal, entity_type_id: int | None) -> tuple[list[tuple[str, str]], str]:
    """The document generator's templates for this type of item, and why they could not be listed (then the
    ID can still be typed)."""
    try:
        return sources.list_templates(B24Client(portal), entity_type_id), ""
    except B24Error as exc:  # no documentgenerator scope or rights
        return [], exc.description or exc.error


def provider_template_choices(accounts) -> tuple[list[dict], str]:
    """Templates of every connected account that has them (signNow), for the provider template control."""
    out, errors = [], []
    for account in accounts:
        impl = account.provider_impl()
        if "templates" not in impl.capabilities:
            continue
        try:
            for tpl in impl.list_templates():
                out.append({"id": tpl.id, "name": tpl.name, "provider": impl.label, "roles": ", ".join(tpl.roles),
                            "text_fields": ", ".join(tpl.text_fields)})
        except ProviderError as exc:
            errors.append(f"{impl.label}: {exc.message}")
    return out, "; ".join(errors)


def drive_file_error(call_as_user, file_id: str) -> str:
    """Why the sending user cannot send Drive file ``file_id`` ("" when they can open it).

    Asked with the user's own token (``UiSession.call_as_user``): Bitrix24's rights decide, never the app's.
    The worker reads it again with the same token; this only spares the manager a request that fails later.
    """
    if not str(file_id or "").strip().isdigit():
        return _("Enter the ID of the Drive file to send.")
    try:
        call_as_user("disk.file.get", {"id": int(file_id)})
    except B24Error as exc:
        if exc.error == "ACCESS_DENIED":
            return _("You cannot open the Drive file %(id)s, so you cannot send it.") % {"id": file_id}
        return _("The Drive file %(id)s cannot be read: %(reason)s") % {"id": file_id,
                                                                       "reason": exc.description or exc.error}
    return ""
