"""A portal-side rendering of an item's timeline: configurable activities (LayoutDto) and log messages, roughly
as Bitrix24 draws them — for browser tests' screenshots and the demo.  ``install(portal)`` adds the route
``GET /crm/type/<etid>/details/<id>/timeline/``."""
from __future__ import annotations

import html

from ..base import Response

CSS = """body{margin:0;background:#eef2f4;font:14px "Open Sans",Helvetica,Arial,sans-serif;color:#333}
.tl{max-width:640px;margin:16px auto;padding:0 12px}.item{background:#fff;border-radius:8px;margin:10px 0;
padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}.head{display:flex;gap:8px;align-items:center}
.title{font-weight:600;flex:1}.tag{border-radius:10px;padding:2px 10px;font-size:12px;color:#fff}
.success{background:#9dcf00}.failure{background:#ff5752}.warning{background:#ffa900}.primary{background:#2fc6f6}
.secondary{background:#a8adb4}.row{display:flex;gap:8px;margin:4px 0}.row .k{color:#828b95;min-width:140px}
.btn{display:inline-block;border-radius:16px;padding:5px 14px;margin:8px 6px 0 0;font-size:13px;border:1px solid #c6cdd3}
.btn.primary{background:#3bc8f5;color:#fff;border-color:#3bc8f5}.log{color:#525c69;font-size:13px}.log b{color:#333}
.menu{color:#828b95;font-size:12px;margin-top:6px}"""


def _text(v) -> str:
    if isinstance(v, dict):
        v = v.get("en") or next(iter(v.values()), "")
    return html.escape(str(v))


def _block(b) -> str:
    p = b.get("properties") or {}
    if b.get("type") == "withTitle":
        return f'<div class="row"><span class="k">{_text(p.get("title"))}</span><span>{_block(p["block"])}</span></div>'
    if b.get("type") == "lineOfBlocks":
        return " ".join(_block(x) for x in (p.get("blocks") or {}).values())
    if b.get("type") == "link":
        return f"<a href='#'>{_text(p.get('text'))}</a>"
    return _text(p.get("value", ""))


def render(portal, etid: int, eid: int) -> str:
    parts = []
    for act in sorted(portal.activities.values(), key=lambda a: -a["id"]):
        if (act["ownerTypeId"], act["ownerId"]) != (etid, eid):
            continue
        lay = act["layout"]
        tags = "".join(f'<span class="tag {html.escape(t["type"])}">{_text(t["title"])}</span>'
                       for t in (lay["header"].get("tags") or {}).values())
        body = "".join(_block(b) if b.get("type") == "withTitle" else f'<div class="row">{_block(b)}</div>'
                       for b in lay["body"]["blocks"].values())
        footer = lay.get("footer") or {}
        buttons = "".join(f'<span class="btn {html.escape(b["type"])}">{_text(b["title"])}</span>'
                          for b in (footer.get("buttons") or {}).values())
        menu = ", ".join(_text(i["title"]) for i in ((footer.get("menu") or {}).get("items") or {}).values())
        parts.append(f'<div class="item activity" data-id="{act["id"]}"><div class="head"><span class="title">'
                     f'{_text(lay["header"]["title"])}</span>{tags}</div>{body}<div>{buttons}</div>'
                     + (f'<div class="menu">⋯ {menu}</div>' if menu else "") + "</div>")
    for msg in reversed(portal.log_messages):
        if (msg["entityTypeId"], msg["entityId"]) == (etid, eid):
            parts.append(f'<div class="item log"><b>{_text(msg["title"])}</b> — {_text(msg["text"])}</div>')
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body><div class='tl'>" \
           f"{''.join(parts)}</div></body></html>"


def install(portal) -> str:
    def page(req, etid, eid):
        return Response(200, render(portal, int(etid), int(eid)), {"Content-Type": "text/html; charset=utf-8"})

    portal.server.add_route("GET", r"^/crm/type/(?P<etid>\d+)/details/(?P<eid>\d+)/timeline/$", page)
    return f"{portal.base_url}/crm/type/{{etid}}/details/{{eid}}/timeline/"
