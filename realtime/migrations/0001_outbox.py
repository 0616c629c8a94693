"""The outbox table; on PostgreSQL a trigger that wakes listening relays, and one that records commit order."""

import django.utils.timezone
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# One notification per insert statement, delivered at commit (never for a rollback); PostgreSQL folds identical
# notifications of one transaction into one, so a transaction of many events wakes the relays once.
# Commit order (realtime.outbox): a deferred constraint trigger runs at COMMIT, takes one advisory lock shared by
# every outbox writer (held only from there to the end of the commit) and numbers the row from a sequence, so
# commit_seq grows in the order the transactions commit, and a row becomes visible only after every row numbered
# before it.
CREATE_TRIGGERS = """
CREATE OR REPLACE FUNCTION realtime_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('realtime_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER realtime_outbox_notify AFTER INSERT ON realtime_outboxevent
    FOR EACH STATEMENT EXECUTE FUNCTION realtime_outbox_notify();

CREATE SEQUENCE IF NOT EXISTS realtime_outbox_commit_seq;
CREATE OR REPLACE FUNCTION realtime_outbox_commit_order() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(2828, 1);
    UPDATE realtime_outboxevent SET commit_seq = nextval('realtime_outbox_commit_seq') WHERE id = NEW.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER realtime_outbox_commit_order AFTER INSERT ON realtime_outboxevent
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION realtime_outbox_commit_order();
"""
DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS realtime_outbox_commit_order ON realtime_outboxevent;
DROP FUNCTION IF EXISTS realtime_outbox_commit_order();
DROP SEQUENCE IF EXISTS realtime_outbox_commit_seq;
DROP TRIGGER IF EXISTS realtime_outbox_notify ON realtime_outboxevent;
DROP FUNCTION IF EXISTS realtime_outbox_notify();
"""


def create_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":  # SQLite: one writer at a time (id order), and a poll
        schema_editor.execute(CREATE_TRIGGERS)


def drop_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGERS)


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="OutboxEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("stream", models.CharField(help_text="channel:scope, e.g. orders:loc-xyz789", max_length=200)),
                ("channel", models.CharField(max_length=32)),
                ("event", models.CharField(max_length=64)),
                (
                    "scope_id",
                    models.CharField(help_text="The location_id, or the user_id of a user channel.", max_length=64),
                ),
                ("data", models.JSONField(default=dict)),
                (
                    "source",
                    models.CharField(
                        default="outbox", help_text="metrics.PUBLISH_SOURCES: model, outbox", max_length=16
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                (
                    "commit_seq",
                    models.BigIntegerField(
                        blank=True,
                        editable=False,
                        help_text="PostgreSQL: the row's place in commit order, set at commit.",
                        null=True,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.TextField(blank=True, default="")),
            ],
            options={
                "ordering": ["id"],
                "indexes": [
                    models.Index(condition=models.Q(("sent_at__isnull", True)), fields=["id"], name="outbox_unsent"),
                    models.Index(
                        condition=models.Q(("sent_at__isnull", True)),
                        fields=["stream", "id"],
                        name="outbox_unsent_stream",
                    ),
                    models.Index(
                        condition=models.Q(("sent_at__isnull", True)),
                        fields=["commit_seq"],
                        name="outbox_unsent_commit",
                    ),
                    models.Index(
                        condition=models.Q(("sent_at__isnull", False)), fields=["sent_at"], name="outbox_sent"
                    ),
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
