"""Bitrix24 cloud emulator: OAuth server + portals (REST, queue server, events, CRM, Drive, sign.b2e).

Usage::

    from tests.emulators.bitrix24 import Bitrix24Cloud
    cloud = Bitrix24Cloud(client_id="local.b24sign", client_secret="s3cret", app_url="http://127.0.0.1:8000")
    cloud.start()
    portal = cloud.add_portal("alpha")
    ...
    cloud.stop()

Follows the platform notes (shared/specs/bitrix24-platform.md) and the seeded docs, not product code.
"""
from . import docgen as _docgen  # noqa: F401  (register the document-generator template methods)
from . import methods as _methods  # noqa: F401  (register the REST methods)
from . import methods_crm as _methods_crm  # noqa: F401  (register the CRM REST methods)
from . import methods_placement as _methods_placement  # noqa: F401  (placements, triggers, notifications)
from . import methods_robots as _methods_robots  # noqa: F401  (register the robot REST methods)
from . import methods_timeline as _methods_timeline  # noqa: F401  (configurable activities, log messages)
from . import methods_userfields as _methods_userfields  # noqa: F401  (user fields, smart-process types)
from .cloud import Bitrix24Cloud
from .core import B24Error, LeakyBucket, OperatingBudget, Stats
from .portal import NGINX_404, QUEUE_USER_AGENT, Portal, Workflow

__all__ = ["Bitrix24Cloud", "Portal", "Workflow", "B24Error", "LeakyBucket", "OperatingBudget", "Stats",
           "QUEUE_USER_AGENT", "NGINX_404"]
