"""The last content of the desired-state file that passed validation, kept beside it, so that ``apply`` at boot
reads the file without the YAML and JSON Schema libraries.

Why: importing ruamel.yaml and jsonschema costs more CPU than the whole of ``pcipass status`` (jsonschema's
``referencing`` machinery alone is most of it, bench/persistence.py), and ``apply`` runs at every boot on a file
that has not changed since ``persist`` wrote it. ``.pcipass.yaml.checked`` (a dot file in the same directory)
holds a key — the SHA-256 of the file's text, of the schema files and of pcipass's version — and the validated
entries as JSON. A file whose key matches is taken from it; any other file (edited by hand, another pcipass, a
changed schema) is validated in full, and a bad one is reported with its file:line as always. A ``.checked`` file
that cannot be read or used is ignored. It is written by the commands that edit the file and by ``apply``
(never by ``apply --check`` or ``verify``, which write nothing).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import __version__

_SCHEMA_DIR = Path(__file__).parent / "schema"


def path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.checked")


def key(text: str) -> str:
    h = hashlib.sha256(__version__.encode() + b"\0" + text.encode())
    for schema in sorted(_SCHEMA_DIR.glob("*.json")):
        h.update(schema.read_bytes())
    return h.hexdigest()


def read(path: Path, want: str) -> dict[str, list] | None:
    """The sections (``[line, item]`` pairs) kept for the file at ``path`` when its key is ``want``."""
    try:
        data = json.loads(path_for(path).read_bytes()[: 1 << 20])
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != want or not isinstance(data.get("sections"), dict):
        return None
    return data["sections"]


def write(path: Path, text_key: str, doc: Any, lines: dict[str, list], host: Any = None) -> None:
    """Keep ``doc``'s sections (validated) for the file at ``path``; a failure to write is not an error."""
    from ..errors import PcipassError
    from .edit import write_atomically
    from .sections import SECTIONS

    sections = {name: [[line, item] for line, item in zip(lines[name], doc.get(name) or [])] for name in SECTIONS}
    target = path_for(path)
    try:
        text = json.dumps({"key": text_key, "sections": sections}) + "\n"
        write_atomically(target, str(target), text, mode=0o644, host=host)
    except PcipassError:
        pass
