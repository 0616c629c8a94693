"""docs/protocol.md's channel reference is generated from the registry; this keeps the two in step."""

from pathlib import Path

from realtime.docs import BEGIN, END, channel_reference
from realtime.errors import REST_ONLY_CODES, CloseCode, ErrorCode, error_classes

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_channel_reference_matches_the_registry() -> None:
    text = PROTOCOL_DOC.read_text()
    section = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert section == channel_reference(), "run `python manage.py channel_reference` and paste it into docs/protocol.md"


def _table_after(heading: str) -> dict[str, list[str]]:
    """The first markdown table under ``heading``: first cell (without backticks) -> the other cells."""
    lines = PROTOCOL_DOC.read_text().splitlines()
    start = lines.index(heading)
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-", " "} or cells[0] in {"code"}:
            continue  # header and separator rows
        key = cells[0].strip("`")
        assert key not in rows, f"{key} is listed twice under {heading}"
        rows[key] = cells[1:]
    return rows


def test_error_code_table_lists_exactly_the_codes_of_realtime_errors() -> None:
    rows = _table_after("## Errors")
    assert set(rows) == {code.value for code in ErrorCode}, "docs/protocol.md '## Errors' vs realtime.errors.ErrorCode"
    for code, (when, _details) in rows.items():
        assert when, f"{code} has no explanation"
        assert when.startswith("REST only") == (code in REST_ONLY_CODES), f"{code}: mark REST-only codes as such"


def test_error_table_names_each_errors_close_code() -> None:
    rows = _table_after("## Errors")
    for error in error_classes():
        if error.close_code is not None:
            assert f"close {int(error.close_code)}" in rows[error.code.value][1], error.code


def test_close_code_table_lists_exactly_the_close_codes_of_realtime_errors() -> None:
    rows = _table_after("## Close codes")
    assert set(rows) == {str(int(code)) for code in CloseCode}, "docs/protocol.md '## Close codes' vs CloseCode"
    for code, (meaning, _advice) in rows.items():
        assert meaning, f"close code {code} has no meaning"
