"""Settings for benchmarks only: the product's settings plus a no-op view and the in-memory provider.

Never used by the product; ``bench/*.py`` point DJANGO_SETTINGS_MODULE here for the processes they start.
"""
from config.settings import *  # noqa: F401,F403
from config.settings import INSTALLED_APPS

ROOT_URLCONF = "bench.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]
SIGNING_EXTRA_PROVIDERS = {"memory": ("In-memory test provider", "tests.support.memory_provider.MemoryProvider")}
