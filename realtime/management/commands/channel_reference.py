from typing import Any

from django.core.management.base import BaseCommand

from realtime.docs import channel_reference


class Command(BaseCommand):
    help = "Print the channel reference section of docs/protocol.md, generated from the registry."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(channel_reference())
