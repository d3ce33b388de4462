"""The browser client's named constants against the server's and the protocol's (issue 11):
``SessionWatch.CloseCode`` (sessionwatch.js) = ``sessionwatch.CloseCode`` = the close-code
table of docs/protocol.md, and the client's close handling names codes only through them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sessionwatch import CloseCode

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client_js" / "sessionwatch.js"
PROTOCOL = ROOT / "docs" / "protocol.md"


def js_api() -> dict[str, dict[str, object]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required (tests/run.sh installs Debian's nodejs)")
    script = "const sw = require(process.argv[1]); console.log(JSON.stringify({CloseCode: sw.CloseCode, State: sw.State}))"
    out = subprocess.run(
        [node, "-e", script, str(CLIENT)], check=True, capture_output=True, text=True, timeout=30
    )
    result: dict[str, dict[str, object]] = json.loads(out.stdout)
    return result


def protocol_table() -> dict[int, str]:
    """code -> name, from the close-code table of docs/protocol.md."""
    rows = re.findall(r"^\| (\d{4}) \| `([A-Z_]+)` \|", PROTOCOL.read_text(), flags=re.M)
    return {int(code): name for code, name in rows}


def test_the_protocol_table_names_every_python_close_code() -> None:
    assert protocol_table() == {code.value: code.name for code in CloseCode}


def test_js_close_codes_are_the_python_ones_by_name_and_value() -> None:
    js = js_api()["CloseCode"]
    assert js, "SessionWatch.CloseCode is empty"
    for name, value in js.items():
        assert CloseCode[name].value == value, name
        assert protocol_table()[int(str(value))] == name
    # every code the client treats specially (not "reconnect with backoff") is named there
    assert set(js) == {
        "EXPIRED",
        "REVOKED",
        "LOGGED_OUT",
        "EVICTED",
        "UNSUPPORTED_VERSION",
        "TAB_INVALID",
        "TOO_MANY_SOCKETS",
        "ROTATED",
    }


def test_the_client_spells_no_close_code_as_a_number() -> None:
    source = CLIENT.read_text()
    table_end = source.index("};", source.index("var CloseCode = {"))
    code = re.sub(r"//[^\n]*|/\*[\s\S]*?\*/", "", source[table_end:])  # comments may cite codes
    literals = re.findall(r"(?<![\w.])4\d{3}(?![\w.])", code)
    assert literals == [], f"app close codes as numbers outside the CloseCode table: {literals}"


def test_js_state_is_one_enum_of_the_documented_states() -> None:
    assert js_api()["State"] == {
        "STOPPED": "stopped",
        "UNSUPPORTED": "unsupported",
        "STARTING": "starting",
        "ACTIVE": "active",
        "SUPERSEDED": "superseded",
        "EVICTED": "evicted",
        "REVOKED": "revoked",
        "LOGGED_OUT": "logged_out",
        "EXPIRED": "expired",
    }
    source = CLIENT.read_text()
    for flag in ("var running", "pollOnly", "waitFocus"):
        assert flag not in source, f"{flag}: the lifecycle is the state, not a boolean"
