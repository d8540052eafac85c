# Two branches each added a Portal field; this joins them (Django's merge migration).
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("b24app", "0002_access_problem"),
        ("b24app", "0002_portal_token_admin_lost"),
    ]

    operations = []
