"""client.d.ts is written by hand; this keeps its lists of error codes, channels and events equal to the code.
(`make test-client` checks that the declarations compile and type a real usage file.)"""

import re
from pathlib import Path

from realtime.errors import REST_ONLY_CODES, CloseCode, ErrorCode
from realtime.registry import CHANNELS

STATIC = Path(__file__).resolve().parents[2] / "realtime" / "static" / "realtime"
DECLARATIONS = (STATIC / "client.d.ts").read_text()


def _block(start: str) -> str:
    begin = DECLARATIONS.index(start)
    return DECLARATIONS[begin : DECLARATIONS.index(";\n\n", begin) if start.startswith("export type") else
                        DECLARATIONS.index("\n}\n", begin)]  # fmt: skip


def test_error_codes_are_those_of_realtime_errors() -> None:
    declared = re.findall(r'"([a-z_]+)"', _block("export type ErrorCode ="))
    assert sorted(declared) == sorted(code.value for code in ErrorCode)
    details = re.findall(r"^  ([a-z_]+): \{", _block("export interface ErrorDetails"), re.MULTILINE)
    assert sorted(details) == sorted(code.value for code in ErrorCode)


def test_channels_and_their_events_are_those_of_the_registry() -> None:
    block = _block("export interface ChannelEvents")
    declared = {
        name: re.findall(r'"([a-z_.]+)"', events) for name, events in re.findall(r"^  (\w+): (.+);$", block, re.M)
    }
    assert declared == {spec.name: list(spec.events) for spec in CHANNELS}
    params = re.findall(r"^  (\w+): ", _block("export interface ChannelParams"), re.MULTILINE)
    assert params == [spec.name for spec in CHANNELS]


def test_the_server_close_codes_are_declared() -> None:
    block = _block("export declare const CloseCode")
    values = {int(v) for v in re.findall(r": (\d{4});", block)}
    assert {int(code) for code in CloseCode} <= values


def test_every_server_error_code_has_its_class_in_client_js() -> None:
    client = (STATIC / "client.js").read_text()
    mapping = client[client.index("const ERROR_CLASS_BY_CODE") :]
    mapping = mapping[: mapping.index("});")]
    mapped = set(re.findall(r"^  ([a-z_]+): ", mapping, re.MULTILINE))

    assert mapped == {code.value for code in ErrorCode if code not in REST_ONLY_CODES}
