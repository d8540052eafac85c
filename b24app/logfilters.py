"""Log records never carry a secret that travels in a URL.

Django's own loggers write the request path (``django.request``: "Forbidden: /signing/webhooks/evia/<secret>/";
``django.server``: the request line).  A provider's webhook URL carries its account's secret in the path,
so that segment is masked before any handler sees the record.
"""
from __future__ import annotations

import logging
import re

WEBHOOK_SECRET = re.compile(r"(/webhooks/[^/\s?\"']+/)[^/\s?\"']+")
PAGE_TOKEN = re.compile(r"([?&]t=)[^&\s\"']+")


def mask(text: str) -> str:
    return PAGE_TOKEN.sub(r"\1***", WEBHOOK_SECRET.sub(r"\1***", text))


class MaskUrlSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logged as it is
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
