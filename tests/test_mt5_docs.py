"""docs/mt5.md's retcode table is the one the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from dtms.broker import codes

DOC = Path(__file__).resolve().parent.parent / "docs" / "mt5.md"


def test_retcode_table_in_the_docs_matches_the_code() -> None:
    rows = re.findall(r"^\| (100\d\d) \| (\w+) \| (\w+) \| (\w+) \|", DOC.read_text(), re.MULTILINE)
    documented = {int(code): (name, handling, kind) for code, name, handling, kind in rows}
    assert documented == {
        code: (name, handling.name, codes.KIND[handling].value)
        for code, (name, handling) in codes.RETCODES.items()
    }
