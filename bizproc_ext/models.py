"""Robot registrations per portal, and every robot call the queue server delivered to us."""
from __future__ import annotations

import json
from datetime import datetime
from functools import cache, partial

import psycopg
from django.db import connections, models, router
from django.utils import timezone

from b24app.crm import crm_entity
from b24app.crypto import EncryptedTextField
from b24app.models import Portal


class RobotRegistration(models.Model):
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="robots")
    code = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    registered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "code"], name="robot_once_per_portal")]


# Every state of a robot call but done.  The partial index robotcall_open holds exactly these rows, so a
# query that names them (rather than excluding done) is one the planner can answer from it.
OPEN_STATES = ("queued", "running", "waiting")


class RobotCall(models.Model):
    """One delivery from Bitrix24's queue server.  The row is the outbox: the worker task and the
    sweeper both start from it, and (portal, event_token) makes a duplicate delivery a no-op."""

    QUEUED, RUNNING, WAITING = OPEN_STATES
    DONE = "done"
    STATES = [(QUEUED, "Queued"), (RUNNING, "Running"), (WAITING, "Waiting for signers"), (DONE, "Done")]

    # No index of its own: robot_call_once (portal, event_token) leads with it.  Every index costs the
    # handler's INSERT (issue 14), so each one here is used by a query.
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="robot_calls", db_index=False)
    code = models.CharField(max_length=64)
    event_token = models.CharField(max_length=512)
    workflow_id = models.CharField(max_length=64)
    document_id = models.JSONField(default=list)     # ["crm", "CCrmDocumentDeal", "DEAL_42"]
    document_type = models.JSONField(default=list, blank=True)
    properties = models.JSONField(default=dict)      # parsed and typed, per the catalogue
    input_errors = models.JSONField(default=list, blank=True)  # answered to the workflow as an error
    use_subscription = models.BooleanField(default=True)
    timeout_duration = models.PositiveIntegerField(default=0)
    queued_ts = models.DateTimeField(null=True, blank=True, help_text="ts: when the portal queued it")
    auth_user_id = models.PositiveIntegerField(null=True, blank=True)
    # The run-as user's own token (auth[access_token]), encrypted: the worker reads the CRM and downloads
    # with that user's rights, and forgets it once the call no longer needs it.  Empty: the call came
    # without one (spec U3/U4), and the portal's stored token is used.
    auth_access_token = EncryptedTextField(blank=True)
    auth_refresh_token = EncryptedTextField(blank=True)  # to renew that token if it expires meanwhile
    auth_expires_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(max_length=10, choices=STATES, default=QUEUED)  # Meta: robotcall_open
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set by the drainer when the task is published (the handler only inserts; drainer.py).
    published_at = models.DateTimeField(null=True, blank=True)
    # A running call's lease, renewed by its worker's heartbeat (lease.py); expired: the worker is gone.
    lease_until = models.DateTimeField(null=True, blank=True)
    # A queued call waiting out its backoff: the sweeper leaves it alone until then.
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When Bitrix24 accepted bizproc.activity.log with the call's event_token (bizproc_ext/proof.py):
    # nothing the call does happens before this is set.
    proven_at = models.DateTimeField(null=True, blank=True)

    # The one answer (bizproc.event.send).  pending -> sending -> sent; "sent" is final.  "refused": the
    # event token did not prove the call (forged), so there is no workflow to answer.
    answer_state = models.CharField(max_length=10, default="pending")  # Meta index: no LIKE index beside it
    answer = models.JSONField(default=dict, blank=True)   # RETURN_VALUES as sent
    answer_log = models.TextField(blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answer_error = models.TextField(blank=True)
    answer_attempts = models.PositiveIntegerField(default=0)  # bizproc.event.send tries (capped)

    # What the send robot found for the same item and document: none | returned | replaced | another
    # (bizproc_ext/duplicates.py); part of every answer to this call.
    open_request = models.CharField(max_length=10, blank=True)
    signature_request = models.ForeignKey("signing.SignatureRequest", null=True, blank=True, db_index=False,
                                          on_delete=models.SET_NULL, related_name="robot_calls")  # Meta index
    created_at = models.DateTimeField(default=timezone.now)  # no index: no query ranges over calls by date
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "event_token"], name="robot_call_once")]
        # Partial indexes hold only the rows their queries look for: the handler's INSERT writes four indexes
        # (pkey, robot_call_once, unpublished, open), not eight, and the partial ones stay the size of the work
        # in flight however many done calls the table holds (docs/decisions.md, 2026-12-02).
        indexes = [models.Index(fields=["id"], name="robotcall_unpublished",  # drainer.py
                                condition=models.Q(state="queued", published_at__isnull=True)),
                   # the sweeper (stuck queued, lost running), the waiting calls' answers, the open-calls metric
                   models.Index(fields=["state", "updated_at"], name="robotcall_open",
                                condition=models.Q(state__in=OPEN_STATES)),
                   models.Index(fields=["updated_at"], name="robotcall_answer_sending",  # the sweeper
                                condition=models.Q(answer_state="sending")),
                   models.Index(fields=["signature_request"], name="robotcall_request",  # a request's calls
                                condition=models.Q(signature_request__isnull=False))]

    def __str__(self):
        return f"{self.code} {self.document_id} [{self.state}]"

    @classmethod
    def insert(cls, **fields) -> int:
        """``objects.create(**fields).pk`` for the robot handler, at a fraction of the CPU (bench/handler.py):
        the same values (defaults, encryption, JSON adaptation, all by the fields themselves) in one
        ``INSERT … RETURNING id`` whose text, and the values of the columns the call never sets, are
        prepared once per process."""
        connection = connections[router.db_for_write(cls)]
        return _insert_statement(connection.alias).run(fields, connection)

    @property
    def entity(self) -> tuple[int, int] | None:
        """(entityTypeId, id) of the CRM item, from document_id (DEAL_42, LEAD_7, DYNAMIC_177_5, SMART_INVOICE_9)."""
        return crm_entity(self.document_id)


class _Insert:
    """One prepared ``INSERT`` of a RobotCall.  A column the call does not set and whose default is a
    constant (state, counters, empty timestamps) has the same database value every time, so it is adapted
    once; callable defaults (``dict``, ``timezone.now``) and ``auto_now`` are evaluated per row.  Each
    column's value goes through an adapter chosen once (``_adapter``): the field's own ``get_db_prep_save``,
    or a shortcut that gives the same database value for the types the handler passes."""

    def __init__(self, connection):
        self.columns = [f for f in RobotCall._meta.concrete_fields if not f.primary_key]
        self.names = {f.attname for f in self.columns}
        quote = connection.ops.quote_name
        names = ", ".join(quote(f.column) for f in self.columns)
        self.sql = (f"INSERT INTO {quote(RobotCall._meta.db_table)} ({names}) VALUES "
                    f"({', '.join(['%s'] * len(self.columns))}) RETURNING {quote(RobotCall._meta.pk.column)}")
        self.fixed = {f.attname: f.get_db_prep_save(f.get_default(), connection) for f in self.columns
                      if not (f.has_default() and callable(f.default)) and not _stamped(f)}
        self.adapters = [(f.attname, _adapter(f, connection), f) for f in self.columns]
        # PostgreSQL: server-side binding, and a statement prepared on each connection's first call.  The
        # values travel apart from the statement, which the server parses and plans once, instead of ~3 KB
        # of SQL quoted by Django's client-side cursor.  Not prepared behind a transaction pooler, where the
        # next call may reach another server connection (DB_TRANSACTION_POOLING).
        self.server_binding = connection.vendor == "postgresql"
        self.prepared = self.server_binding and not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")

    def run(self, fields: dict, connection) -> int:
        unknown = fields.keys() - self.names
        if unknown:
            raise TypeError(f"RobotCall has no field(s) {sorted(unknown)}")
        now = timezone.now()
        fixed = self.fixed
        params = []
        for name, adapt, f in self.adapters:
            if name in fields:
                params.append(adapt(fields[name]))
            elif name in fixed:
                params.append(fixed[name])
            else:
                params.append(adapt(now if _stamped(f) else f.get_default()))
        with self._cursor(connection) as cursor:
            cursor.execute(self.sql, params)
            return cursor.fetchone()[0]

    def _cursor(self, connection):
        if not self.server_binding:
            return connection.cursor()
        connection.ensure_connection()
        raw = connection.connection
        if not self.prepared:
            cursor = psycopg.Cursor(raw)  # values bound on the server, the statement parsed each time
        else:
            if raw.prepare_threshold is None:
                # Django connects with psycopg's prepare_threshold off, and off means never: psycopg then
                # ignores ``prepare=True`` and PostgreSQL parses and plans the statement on every call (seen in
                # its profile, BENCHMARKS.md).  Django's own cursors bind on the client and never prepare, so
                # this only lets the statements that ask (ours) be prepared.
                raw.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
            cursor = _PreparedCursor(raw)
        # Django's own wrapper around it: the same error translation (IntegrityError, DataError) and, when
        # queries are logged (DEBUG, tests), the same log.
        return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


PREPARE_ONLY_WHEN_ASKED = 2**31 - 1  # a statement never reaches it by repetition: only prepare=True prepares


class _PreparedCursor(psycopg.Cursor):
    """A psycopg cursor whose statements are prepared at once (``prepare=True``): Django's cursor wrapper
    calls ``execute(sql, params)`` and has no way to ask for it."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    def _send_query_prepared(self, name, pgq, *, binary=None):
        # psycopg records the query only when it sends its text; Django's query log (DEBUG, tests) reads it back
        # (``last_executed_query``), so a call that only binds would be logged with no SQL.
        self._query = pgq
        return super()._send_query_prepared(name, pgq, binary=binary)


def _adapter(field, connection):
    """value -> database value for one column, as ``field.get_db_prep_save`` computes it.

    Shortcuts, where Django's chain of prep calls is most of the handler's INSERT cost: a JSON value is
    dumped here, once, to text that PostgreSQL reads as jsonb (Django wraps it for psycopg to dump, with the
    same ``json.dumps``); a ``str`` for a text column, an ``int`` for an integer or a foreign key and an aware
    ``datetime`` pass as they are.  Any other value takes the field's own way, so the result never differs from
    the ORM's."""
    prep = partial(field.get_db_prep_save, connection=connection)
    if connection.vendor != "postgresql" or isinstance(field, EncryptedTextField):
        return prep  # the cipher is the field's own
    if isinstance(field, models.JSONField) and field.encoder is None:
        return lambda value: value if value is None else json.dumps(value)
    if isinstance(field, (models.CharField, models.TextField)):
        return lambda value: value if type(value) is str else prep(value)
    if isinstance(field, models.DateTimeField):
        return lambda value: value if type(value) is datetime and value.tzinfo is not None else prep(value)
    if isinstance(field, (models.IntegerField, models.ForeignKey)):  # ids, counters, durations
        return lambda value: value if value is None or type(value) is int else prep(value)
    if isinstance(field, models.BooleanField):
        return lambda value: value if type(value) is bool else prep(value)
    return prep


def _stamped(field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


@cache
def _insert_statement(alias: str) -> _Insert:
    return _Insert(connections[alias])
