# Issue 13's fields and the drainer/lease fields of issues 14 and 11 arrived on separate branches.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("bizproc_ext", "0006_merge_drainer_lease"),
        ("bizproc_ext", "0006_merge_issue13"),
    ]

    operations = []
