"""DRF's JSON parser on the gateway's bounded decoder: deep or broken JSON is ``invalid_message``, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.parsers import JSONParser

from realtime.jsondecode import decode_json


class BoundedJSONParser(JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        return decode_json(stream.read(), what="Request body")
