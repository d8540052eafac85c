"""What a portal's REST requests were for, from the emulator's request log (``rest_log``).

Each command of a request is put in one of four kinds by the job it belongs to (a coalesced batch keys each
job's commands ``j<n>_<key>``):

* ``proof``: the call's ``bizproc.activity.log("received by b24sign")`` sent alone (a shared batch proves the
  calls in one round and reads in the next);
* ``reads``: the call's CRM reads (``crm.item.get``, contacts, users, Drive …), with or without its proof;
* ``answers``: ``bizproc.event.send`` and the progress lines before it;
* ``cards``: the CRM card's commands (timeline card, status fields, log messages, trigger, notification);
* ``other``: anything else (install, setup, …).

A request is named after the kinds it carried (``answers+cards`` when both rode in it).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qsl

CARD_METHODS = {"crm.activity.configurable.add", "crm.activity.configurable.update", "crm.timeline.logmessage.add",
                "crm.item.update", "crm.automation.trigger.execute", "im.notify.system.add"}
CARD_KEYS = {"fields", "item", "card", "trigger", "notify"}
READ_PREFIXES = ("crm.", "user.", "disk.")
_JOB = re.compile(r"^(j\d+_)(.*)$")


def _kind(commands: list[tuple[str, str, dict]]) -> str:
    """One job's commands (key, method, params) → its kind."""
    methods = {m for _, m, _ in commands}
    if methods & CARD_METHODS:
        return "cards"
    if "bizproc.event.send" in methods:
        return "answers"
    if methods - {"bizproc.activity.log"}:
        keys = {k for k, _, _ in commands}
        if keys <= CARD_KEYS | {k for k in keys if re.fullmatch(r"(log|view)\d+", k)}:
            return "cards"  # crm.item.get alone for a card's responsible user
        return "reads" if any(m.startswith(READ_PREFIXES) for m in methods) else "other"
    if any(str(p.get("LOG_MESSAGE", "")).startswith("received by b24sign") for _, _, p in commands):
        return "proof"
    return "answers"  # a progress line


def _commands(entry: dict) -> list[tuple[str, str, dict]]:
    if entry["method"] != "batch":
        return [("one", entry["method"], entry.get("params") or {})]
    cmd = (entry.get("params") or {}).get("cmd") or {}
    items = cmd.items() if isinstance(cmd, dict) else enumerate(cmd)
    out = []
    for key, query in items:
        name, _, qs = str(query).partition("?")
        params = dict(parse_qsl(qs, keep_blank_values=True))
        message = next((v for k, v in params.items() if k == "LOG_MESSAGE"), "")
        out.append((str(key), name.strip("/").lower().removesuffix(".json"), {"LOG_MESSAGE": message}))
    return out


def classify(entry: dict) -> tuple[str, Counter]:
    """A request's name (its kinds joined by ``+``) and its commands per kind."""
    jobs: dict[str, list] = defaultdict(list)
    for key, method, params in _commands(entry):
        m = _JOB.match(key)
        prefix, bare = (m.group(1), m.group(2)) if m else ("", key)
        jobs[prefix].append((bare, method, params))
    per_kind = Counter()
    for commands in jobs.values():
        per_kind[_kind(commands)] += len(commands)
    return "+".join(sorted(per_kind)), per_kind


def breakdown(log: list[dict], timeline: Path | None = None, t0: float = 0.0) -> dict:
    """Requests per name, and commands per kind (over every request); ``timeline``: one line per request
    (seconds after ``t0``, name, commands per kind), for a look at when each kind went out."""
    requests, commands = Counter(), Counter()
    lines = []
    for entry in log:
        name, per_kind = classify(entry)
        requests[name] += 1
        commands.update(per_kind)
        lines.append(f"{entry.get('at', t0) - t0:.2f}\t{name}\t" + " ".join(f"{k}={n}" for k, n in sorted(per_kind.items())))
    if timeline is not None:
        timeline.write_text("\n".join(lines) + "\n")
    return {"requests": dict(requests), "commands": dict(commands)}
