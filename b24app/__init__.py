"""The Bitrix24 platform layer: portals, OAuth, the REST client, app events, frames, crypto, coordination
and the one outbound HTTP seam.  It knows nothing of signatures or robots; it announces what happens
through ``b24app.signals``."""
