"""docs/protocol.md's channel reference is generated from the registry; this keeps the two in step."""

from pathlib import Path

from realtime.docs import BEGIN, END, channel_reference

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_channel_reference_matches_the_registry() -> None:
    text = PROTOCOL_DOC.read_text()
    section = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert section == channel_reference(), "run `python manage.py channel_reference` and paste it into docs/protocol.md"
