"""What the platform announces, for the layers above to act on (they subscribe in ``AppConfig.ready()``).

The platform knows nothing of robots or signatures: it verifies Bitrix24's calls, then says what
happened.  Receivers get ``portal`` (and the REST ``client`` where one is ready to use).

- ``app_installed``: the install page has verified an admin and stored the portal.  Receivers do their
  part of the setup with ``client`` (e.g. register robots) and may return a dict that the install page
  shows; a ``B24Error`` they raise fails the install page (the admin simply reopens the app).
- ``app_updated``: ``ONAPPUPDATE`` was verified (Bitrix24 dropped the app's robots; register them again).
- ``app_uninstalled``: ``ONAPPUNINSTALL`` was verified and applied; ``clean`` says whether the data went too.

Portal events that upper layers subscribe to (``ONSIGNB2E*``) are routed through
:func:`register_portal_event`: the platform binds each registered name with ``event.bind`` and hands
the verified call to its handler.
"""
from __future__ import annotations

from typing import Callable

from django.dispatch import Signal

app_installed = Signal()    # portal, client
app_updated = Signal()      # portal
app_uninstalled = Signal()  # portal, clean

# event name -> handler(portal, data) -> short outcome ("queued", "ignored")
PortalEventHandler = Callable[..., str]
_portal_events: dict[str, PortalEventHandler] = {}


def register_portal_event(name: str, handler: PortalEventHandler) -> None:
    """Route the portal event ``name`` (upper case, as Bitrix24 posts it) to ``handler``."""
    _portal_events[name.upper()] = handler


def portal_event_handler(name: str) -> PortalEventHandler | None:
    return _portal_events.get(name.upper())


def portal_event_names() -> tuple[str, ...]:
    return tuple(sorted(_portal_events))
