"""Robot properties that are secrets (the signer's password / access code): sealed before the call row
is stored, opened only by the worker that sends, and erased once the provider has them."""
from __future__ import annotations

from b24app.crypto import decrypt, encrypt

from .models import RobotCall

SEALED = "sealed"


def seal(robot, values: dict) -> dict:
    """``values`` with every ``secret`` property encrypted (b24app.crypto) the way it is stored in the JSON column."""
    out = dict(values)
    for key, prop in robot.properties.items():
        if getattr(prop, "secret", False) and out.get(key) not in (None, ""):
            out[key] = {SEALED: encrypt(str(out[key]))}
    return out


def unseal(value) -> str:
    if isinstance(value, dict) and isinstance(value.get(SEALED), str):
        return decrypt(value[SEALED])
    return "" if value is None or isinstance(value, dict) else str(value)


def erase(call: RobotCall, robot) -> None:
    """Forget the call's secrets (the provider has them now); the row keeps that there was one."""
    keys = [k for k, p in robot.properties.items() if getattr(p, "secret", False) and call.properties.get(k)]
    if not keys:
        return
    call.properties = {**call.properties, **{k: {"erased": True} for k in keys}}
    RobotCall.objects.filter(pk=call.pk).update(properties=call.properties)
