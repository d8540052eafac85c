"""File names for ``sign.b2e.document.send``: what the core accepts, and the marker we find the signed file by."""
from __future__ import annotations

import re


def title_marker(request_id: str) -> str:
    """U-B2: the mark that makes our document findable in ``mysafe.tail`` (which has no uid)."""
    return f"[b24sign-{request_id}]"


# The characters Bitrix24's core refuses in a file name (``Path::validateFilename``: the reserved
# characters, control bytes and U+202E, the right-to-left override); a send with one fails with
# "[files] Invalid file name.".
REFUSED_IN_FILE_NAME = re.compile("[\\\\/:*?\"'<>|~#&;\x00-\x1f\u202e]+")


def file_name_for(title: str, request_id: str) -> str:
    """``<title> [b24sign-<id>].pdf``: a name Bitrix24 accepts (none of the characters its core refuses)."""
    safe = REFUSED_IN_FILE_NAME.sub(" ", title or "").strip(" .")
    safe = re.sub(r"\s+", " ", safe)[:150] or "Document"
    return f"{safe} {title_marker(request_id)}.pdf"
