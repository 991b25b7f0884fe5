"""The desired-state file: ``/etc/pcipass/pcipass.yaml`` under the root (``Host.pcipass_config``), or ``--config``.

A versioned YAML file (``version: 1``) with one key per *section*; ``devices`` is the first. ``load`` reads and
validates it and returns a ``Desired`` (frozen entries per section); ``Editor`` changes entries in place,
keeping the file's comments and key order, and writes it back atomically once the result validates.

Libraries, and why:

- ruamel.yaml (round-trip mode) reads the file with every node's line, which the errors need, and writes it
  back with its comments and key order: PyYAML drops comments and cannot say where a value was. Debian 12
  ships it (python3-ruamel.yaml 0.17.21).
- jsonschema checks the file against the JSON Schema shipped here (``schema/``, draft 2020-12), the same
  document users and editors can validate with (docs/persistence.md). Debian 12: python3-jsonschema 4.10.

Every problem is a ``ConfigError`` (exit 2) naming ``file:line: key:``: bad YAML, a duplicate mapping key, a
schema violation (unknown key, wrong type, a non-canonical address), two entries with the same key.

Adding a section (``sriov:``, ``mdev:``, ...):

1. ``pcipass/config/schema/<name>.schema.json``: the section's JSON Schema. A section is a list of mappings;
   give each item ``"additionalProperties": false`` and a ``description`` per key (docs/persistence.md is
   generated from them).
2. A module ``pcipass/config/<name>.py`` with a frozen dataclass for one entry and a function
   ``from_node(item: dict, line: int) -> Entry`` (the item has passed the schema).
3. One line in ``sections.SECTIONS``: ``Section("<name>", key="<field>", parse=<module>.from_node)``; ``key``
   names the field that identifies an entry (two entries with the same value are an error, and ``Editor``
   finds entries by it).
4. Read it with ``load(...).section("<name>")``; edit it with ``Editor.upsert("<name>", {...})`` /
   ``Editor.remove("<name>", value)``.
Nothing else here needs to change: the top-level schema gets the section's schema under ``properties``.
"""

from __future__ import annotations

from .edit import Editor
from .load import Desired, config_path, load, schema

__all__ = ["Desired", "Editor", "config_path", "load", "schema"]
