"""Option values shared by the emitters and the CLI, kept apart from the emitters so that declaring the CLI's
options does not import ``xml.etree`` on every pcipass run."""

from __future__ import annotations

from enum import Enum


class Managed(str, Enum):
    yes = "yes"
    no = "no"
    auto = "auto"  #: "no" when the device is already on a vfio driver, else "yes"
