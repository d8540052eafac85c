# The drainer's published_at (issue 14) and the run-as token and lease (issue 11) arrived on two branches.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("bizproc_ext", "0005_merge_published_at"),
        ("bizproc_ext", "0005_run_as_token_and_lease"),
    ]

    operations = []
