"""The kernel command line, parsed the way the kernel parses it.

Tokenising follows ``next_arg()`` in lib/cmdline.c: whitespace separates parameters unless inside double
quotes; a parameter may be quoted as a whole (``"key=a b"``) or in its value (``key="a b"``), and those outer
quotes are dropped; the first ``=`` splits name from value. ``parse_args()`` in kernel/params.c stops at a
bare ``--``: everything after it goes to init (Documentation/admin-guide/kernel-parameters.rst).

Names compare with ``-`` and ``_`` equal ("Hyphens (dashes) and underscores are equivalent in parameter
names", kernel-parameters.rst; ``parameq()`` in kernel/params.c), so ``vfio-pci.ids`` is ``vfio_pci.ids``.
(Handlers registered with ``__setup`` — ``amd_iommu=`` is one — compare the name exactly; the difference only
matters for misspelt names, which pcipass then over-reports rather than misses.)

A parameter may appear several times. For a plain value the last one wins (``iommu.passthrough=``, module
parameters). Handlers that take comma-separated options (``intel_iommu=``, ``iommu=``, ``amd_iommu=``) run
once per occurrence, in order, so their options accumulate and a later option overrides an earlier one:
:meth:`Cmdline.options` returns them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass


def normalize_name(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class Param:
    """One kernel command-line parameter, as the kernel splits them (next_arg() in lib/cmdline.c)."""

    key: str  #: the name as written
    value: str | None  #: None for a bare flag (no ``=``)
    token: str  #: the parameter as it appeared on the line (for messages)

    @property
    def name(self) -> str:
        return normalize_name(self.key)


def _next_arg(text: str, pos: int) -> tuple[str, str | None, str, int]:
    """One parameter starting at ``pos`` (not whitespace): (key, value, raw token, next position)."""
    start = pos
    in_quote = quoted = False
    if text[pos] == '"':
        pos += 1
        in_quote = quoted = True
    begin = pos
    equals = -1
    i = pos
    while i < len(text):
        ch = text[i]
        if ch.isspace() and not in_quote:
            break
        if equals < 0 and ch == "=" and i > begin:  # next_arg() ignores an '=' in the first position
            equals = i
        if ch == '"':
            in_quote = not in_quote
        i += 1
    end = i
    token = text[start:end]
    body_end = end
    value: str | None = None
    if equals < 0:
        key = text[begin:body_end]
    else:
        key = text[begin:equals]
        vstart = equals + 1
        # "Don't include quotes in value": a leading quote is dropped, and then a trailing one.
        if vstart < body_end and text[vstart] == '"':
            vstart += 1
            if body_end > vstart and text[body_end - 1] == '"':
                body_end -= 1
        value = text[vstart:body_end]
    if quoted and end > begin and text[end - 1] == '"':
        if value is not None and body_end == end:
            value = value[:-1]
        elif value is None:
            key = key[:-1]
    return key, value, token, end


@dataclass(frozen=True)
class Cmdline:
    """A parsed kernel command line: its parameters in order, what follows ``--``, and the text read."""

    params: tuple[Param, ...]
    #: Arguments after a bare ``--``: passed to init, not kernel parameters.
    init_args: tuple[str, ...]
    raw: str

    @classmethod
    def parse(cls, text: str) -> Cmdline:
        text = text.strip()
        params: list[Param] = []
        pos = 0
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            key, value, token, pos = _next_arg(text, pos)
            if value is None and key == "--":
                rest = text[pos:].split()
                return cls(tuple(params), tuple(rest), text)
            params.append(Param(key, value, token))
        return cls(tuple(params), (), text)

    def all(self, name: str) -> list[Param]:
        """Every occurrence of ``name``, in order."""
        want = normalize_name(name)
        return [p for p in self.params if p.name == want]

    def has(self, name: str) -> bool:
        return bool(self.all(name))

    def last(self, name: str) -> Param | None:
        found = self.all(name)
        return found[-1] if found else None

    def value(self, name: str) -> str | None:
        """The value of the last occurrence (last one wins); None when absent or a bare flag."""
        p = self.last(name)
        return p.value if p else None

    def options(self, name: str) -> list[str]:
        """Comma-separated options of every occurrence, in order (empty options dropped)."""
        out: list[str] = []
        for p in self.all(name):
            if p.value:
                out.extend(o for o in p.value.split(",") if o)
        return out

    def flag(self, name: str) -> bool | None:
        """A boolean module/core parameter as ``param_set_bool``/``kstrtobool`` reads it (last one wins).

        A bare name means true; ``1 y Y on`` true, ``0 n N off`` false; anything else is rejected by the
        kernel (None here, as when absent).
        """
        p = self.last(name)
        if p is None:
            return None
        if p.value is None or p.value == "":
            return True
        v = p.value.lower()
        if v in ("1", "y", "yes", "on", "true"):
            return True
        if v in ("0", "n", "no", "off", "false"):
            return False
        return None

    def tokens(self, *names: str) -> list[str]:
        """The original tokens of parameters with these names (for "remove ..." remedies)."""
        wanted = {normalize_name(n) for n in names}
        return [p.token for p in self.params if p.name in wanted]

    def without(self, *names: str) -> list[str]:
        """The tokens of every parameter except those named (keeps the init part out)."""
        wanted = {normalize_name(n) for n in names}
        return [p.token for p in self.params if p.name not in wanted]
