"""PHP-style query encoding, the way Bitrix24 reads ``batch`` commands and form bodies."""
from __future__ import annotations

import re
from urllib.parse import quote, urlencode


def php_pairs(data, prefix: str = "") -> list[tuple[str, str]]:
    """``{"filter": {"ID": [1, 2]}}`` -> ``[("filter[ID][0]", "1"), ("filter[ID][1]", "2")]``."""
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, (list, tuple)):
        items = list(enumerate(data))
    else:
        return [(prefix, _scalar(data))]
    pairs: list[tuple[str, str]] = []
    if prefix and not items:
        return [(prefix, "")]
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)):
            pairs.extend(php_pairs(value, name))
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def php_query(data) -> str:
    return urlencode(php_pairs(data), quote_via=quote)


def _scalar(value) -> str:
    if value is True:
        return "Y"
    if value is False:
        return "N"
    if value is None:
        return ""
    return str(value)


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def php_key_path(key: str) -> tuple[str, ...]:
    """``properties[signers][]`` -> ``("properties", "signers", "")``; a key that is not bracket notation is one
    part."""
    m = _KEY.match(key) if "[" in key else None  # a plain key needs no regex
    return (m.group(1), *_PART.findall(m.group(2))) if m else (key,)


def parse_php_pairs(pairs) -> dict:
    """The inverse: bracketed keys into nested dicts.  Lists stay dicts keyed by index strings
    (``properties[k][0]``), except ``k[]`` appends, so callers decide what a list means."""
    return nest_php_paths((php_key_path(key), value) for key, value in pairs)


def nest_php_paths(paths) -> dict:
    """``parse_php_pairs`` for keys already split by ``php_key_path``."""
    root: dict = {}
    for parts, value in paths:
        nest_php_path(root, parts, value)
    return root


def nest_php_path(root: dict, parts: tuple[str, ...], value) -> None:
    """Put one value at its split key in ``root`` (later values win; ``k[]`` appends)."""
    if len(parts) == 2:  # most of what Bitrix24 posts (auth[x], properties[x], document_id[0]): no loop
        head, part = parts
        node = root.get(head)
        if not isinstance(node, dict):
            node = root[head] = {}
        node[str(len(node)) if part == "" else part] = value
        return
    node = root
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part == "" and i:  # k[] appends; a plain key "" is a key
            part = str(len(node))
        if i == last:
            node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
