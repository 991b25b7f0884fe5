"""Golden files: compared byte for byte, regenerated only on purpose with PCIPASS_REGEN_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent.parent / "golden"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PCIPASS_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"missing golden file {path}; create it with PCIPASS_REGEN_GOLDEN=1"
    expected = path.read_text()
    assert actual == expected, f"output differs from {path} (regenerate on purpose with PCIPASS_REGEN_GOLDEN=1)"
