"""``boot install``, ``boot remove``, ``boot status``: the unit that runs ``pcipass apply`` at every boot."""

from typing import Any

import typer

from . import context
from .context import ConfigOption, FormatOption, finish
from .render import Block, KeyValues, Table

boot_app = typer.Typer(
    name="boot",
    help="The systemd unit that runs 'pcipass apply' early at every boot, before libvirt, kubelet, RKE2 and K3s.",
    no_args_is_help=True,
)


def _actions_view(data: list[dict[str, Any]]) -> list[Block]:
    return [Table(("PATH", "ACTION", "DETAIL"), [[a["path"], a["action"], a["detail"]] for a in data])]


def _shown_config(config: str | None) -> str:
    """The desired-state file as the unit names it: the host's own path (absolute, not under --root)."""
    import os

    from .persist_cmds import config_file

    host, path, shown = config_file(config)
    return shown if config is None else os.path.abspath(path)


def install_cmd(config: ConfigOption = None, fmt: FormatOption = None) -> None:
    """Write /etc/systemd/system/pcipass-apply.service and enable it (the link 'systemctl enable' makes).

    The unit runs 'pcipass apply --boot --config FILE' after systemd-modules-load, before sysinit.target.

    It is ordered before libvirtd, virtqemud, kubelet, rke2-server, rke2-agent and k3s.

    The in-use guards apply at boot as they do by hand."""
    context.state(fmt)
    from ..persistence import boot
    from ..result import Result

    actions = boot.install(context.CURRENT.host(), _shown_config(config))
    finish(
        Result("boot install", data=actions, top={"changed": any(a.action in ("written", "linked") for a in actions)}),
        _actions_view,
    )


def remove_cmd(fmt: FormatOption = None) -> None:
    """Disable and remove pcipass-apply.service (the desired-state file stays)."""
    context.state(fmt)
    from ..persistence import boot
    from ..result import Result

    actions = boot.remove(context.CURRENT.host())
    finish(
        Result("boot remove", data=actions, top={"changed": any(a.action == "removed" for a in actions)}), _actions_view
    )


def _status_view(data: dict[str, Any]) -> list[Block]:
    last = data["last_apply"]
    pairs: list[tuple[str, Any]] = [
        ("unit", data["unit"]),
        (
            "installed",
            data["installed"]
            if data["current"] is not False
            else "yes, but not what this pcipass writes: run 'pcipass boot install' again",
        ),
        ("enabled", data["enabled"]),
        ("last apply", data["last_apply_note"]),
    ]
    if last:
        pairs += [
            ("  finished", last.get("finished")),
            ("  exit code", last.get("exit_code")),
            ("  changed", last.get("changed")),
        ]
        if last.get("error"):
            pairs.append(("  error", last["error"]))
    blocks: list[Block] = [KeyValues(pairs, title="pcipass-apply.service")]
    if last and last.get("entries"):
        blocks.append(
            Table(
                ("ADDRESS", "OUTCOME", "REASON"),
                [[e["address"], e["outcome"], "; ".join(e["reasons"]) or None] for e in last["entries"]],
                title="Entries at this boot",
            )
        )
    if data["early_drivers"]:
        rows = [
            [e["address"], e["driver"], "built in" if e["builtin"] else "module", e["remedy"]]
            for e in data["early_drivers"]
        ]
        blocks.append(
            Table(
                ("ADDRESS", "HOST DRIVER", "KIND", "TO KEEP IT OFF FROM THE INITRAMFS"),
                rows,
                title="Host drivers that bind before the unit (it still converges: unbind + bind)",
            )
        )
    return blocks


def status_cmd(config: ConfigOption = None, fmt: FormatOption = None) -> None:
    """Is the unit installed and enabled, and how did this boot's apply end.

    Also: the persisted devices a host driver takes before the unit runs, with the initramfs remedy."""
    context.state(fmt)
    from .. import engine
    from ..config import load
    from ..errors import ConfigError
    from ..inventory import Inventory
    from ..pciids import PciIds
    from ..persistence import boot, initramfs
    from ..result import Result
    from .persist_cmds import config_file

    host, path, shown = config_file(config)
    messages = []
    try:
        entries = load(path, shown, missing_ok=True).devices
    except ConfigError as err:  # the unit's state is still worth showing
        messages.append(f"{err.message}: the persisted devices are not checked")
        entries = ()
    early = []
    if entries:
        addrs = [e.address for e in entries if e.driver != "host"]
        inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=addrs)
        for st in engine.status(host, [a for a in addrs if a in inv.devices]).devices:
            host_driver = st.recorded_driver if st.recorded_known else st.driver
            if host_driver and not host_driver.replace("-", "_").endswith("vfio_pci"):
                found = initramfs.early_driver(host, inv.devices[st.address], host_driver)
                if found:
                    early.append(found)
    st = boot.status(host, _shown_config(config), tuple(early))
    finish(Result("boot status", data=st, messages=messages), _status_view)


def register(app: typer.Typer) -> None:
    boot_app.command("install")(install_cmd)
    boot_app.command("remove")(remove_cmd)
    boot_app.command("status")(status_cmd)
    app.add_typer(boot_app)
