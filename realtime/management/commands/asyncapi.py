from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from realtime.asyncapi import render


class Command(BaseCommand):
    help = "Write the AsyncAPI 3.0 document of /v1/ws (generated from the registry and the message models)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", default="docs/asyncapi.json", help="file to write, or - for stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        text = render()
        if options["output"] == "-":
            self.stdout.write(text, ending="")
            return
        path = Path(options["output"])
        path.write_text(text, encoding="utf-8")
        self.stdout.write(f"wrote {path} ({len(text)} bytes)")
