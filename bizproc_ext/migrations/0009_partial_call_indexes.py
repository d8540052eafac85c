"""Partial indexes on robot calls: the handler's INSERT writes four indexes instead of eight (issue 14).

New indexes are built first and without blocking writes (CREATE INDEX CONCURRENTLY on PostgreSQL: a
large table is not locked against the robot handler while they build), then the old ones go.  Dropping
is quick; the two field indexes are dropped by AlterField, the plain way.
"""
import django.db.models.deletion
import django.utils.timezone
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class OnlineOnPostgreSQL:
    """CONCURRENTLY on PostgreSQL; the plain operation (`plain`) elsewhere (SQLite, `make run`)."""

    plain = None

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexOnline(OnlineOnPostgreSQL, AddIndexConcurrently):
    plain = migrations.AddIndex


class RemoveIndexOnline(OnlineOnPostgreSQL, RemoveIndexConcurrently):
    plain = migrations.RemoveIndex


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ('b24app', '0003_merge_admin_lost_access_problem'),
        ('bizproc_ext', '0008_fewer_call_indexes'),
        ('signing', '0004_signer_viewed_callbacks_check'),
    ]

    operations = [
        AddIndexOnline(
            model_name='robotcall',
            index=models.Index(condition=models.Q(('state__in', ('queued', 'running', 'waiting'))), fields=['state', 'updated_at'], name='robotcall_open'),
        ),
        AddIndexOnline(
            model_name='robotcall',
            index=models.Index(condition=models.Q(('answer_state', 'sending')), fields=['updated_at'], name='robotcall_answer_sending'),
        ),
        AddIndexOnline(
            model_name='robotcall',
            index=models.Index(condition=models.Q(('signature_request__isnull', False)), fields=['signature_request'], name='robotcall_request'),
        ),
        RemoveIndexOnline(
            model_name='robotcall',
            name='robotcall_sweep',
        ),
        RemoveIndexOnline(
            model_name='robotcall',
            name='robotcall_lease',
        ),
        RemoveIndexOnline(
            model_name='robotcall',
            name='robotcall_answer_state',
        ),
        migrations.AlterField(
            model_name='robotcall',
            name='created_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name='robotcall',
            name='signature_request',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='robot_calls', to='signing.signaturerequest'),
        ),
    ]
