# Two branches each added a RobotCall field; this joins them (Django's merge migration).
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("bizproc_ext", "0003_answer_attempts"),
        ("bizproc_ext", "0003_robotcall_proven_at"),
    ]

    operations = []
