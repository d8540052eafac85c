"""Evia Sign (Enadoc) API v2: OAuth code flow, skeleton requests (type=0), callbacks with the signed PDF.

Files: ``client.py`` (HTTP calls, token refresh), ``provider.py`` (the Provider interface), ``webhooks.py``
(callback parsing).  Reference: shared/specs/esign-providers.md §2 and §7 (U-E1..U-E6).
"""
