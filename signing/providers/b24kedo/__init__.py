"""Bitrix24 Sign for HR documents (KEDO, ``sign.b2e.*``), through the portal's own REST client.

Files: ``client.py`` (the sign.b2e calls, Bitrix24 errors -> ProviderError, the signed-file download),
``provider.py`` (the Provider interface).  Status changes arrive as portal events (signing/events.py), which
only trigger a re-read with ``sign.b2e.document.get``.  Reference: shared/specs/esign-providers.md §3, §7.
"""
