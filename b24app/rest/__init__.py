"""Bitrix24 REST: one client, one error type."""
from .client import B24Client, BatchResult
from .errors import B24Error, NeedsReinstall

__all__ = ["B24Client", "BatchResult", "B24Error", "NeedsReinstall"]
