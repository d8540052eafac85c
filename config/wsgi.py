import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from bizproc_ext.wsgi import robot_calls_first  # noqa: E402  (after django.setup(): it imports models)

application = robot_calls_first(django_application)
