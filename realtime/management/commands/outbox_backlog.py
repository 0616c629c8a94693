"""``manage.py outbox_backlog``: what the outbox relay has not published yet, in total and per stream."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from realtime.outbox import read_backlog, read_stream_backlogs


class Command(BaseCommand):
    help = "Show the outbox backlog: unsent events, the oldest one's age, and the oldest row of each stream."

    def handle(self, *args: Any, **options: Any) -> None:
        backlog = read_backlog()
        self.stdout.write(f"backlog: {backlog.unsent} unsent")
        self.stdout.write(f"lag: {backlog.lag_seconds:.3f} s")
        now = timezone.now()
        for stream in read_stream_backlogs():
            age = (now - stream.oldest_created_at).total_seconds()
            self.stdout.write(
                f"{stream.stream}: {stream.unsent} unsent, oldest row {stream.oldest_id} "
                f"({stream.oldest_created_at.isoformat()}, {age:.3f} s ago)"
            )
