"""``attach`` / ``detach``: add PCI devices to a libvirt domain or take them away (needs pcipass[libvirt])."""

from typing import Annotated, Any

import typer

from ..emit.choices import Managed
from . import context
from .context import FormatOption, finish
from .render import Block, Table

DomainArg = Annotated[str, typer.Argument(metavar="DOMAIN", help="libvirt domain name.")]
AddressesArg = Annotated[list[str], typer.Argument(metavar="ADDR...", help="PCI addresses, DDDD:BB:DD.F or BB:DD.F.")]
ConnectOption = Annotated[
    str | None,
    typer.Option(
        "--connect",
        "-c",
        metavar="URI",
        help="libvirt connection URI (default: libvirt's, e.g. $LIBVIRT_DEFAULT_URI).",
        show_default=False,
    ),
]
LiveOption = Annotated[bool, typer.Option("--live", help="Change the running domain.")]
ConfigOption = Annotated[
    bool,
    typer.Option(
        "--config",
        help="Change the persistent definition. Neither --live nor "
        "--config: the running domain if it runs, else the definition.",
    ),
]


def _view(data: list[dict[str, Any]]) -> list[Block]:
    return [
        Table(
            ("ADDRESS", "DOMAIN", "ACTION", "LIVE", "CONFIG"),
            [[c["address"], c["domain"], c["action"], c["live"], c["config"]] for c in data],
        )
    ]


def attach_cmd(
    domain: DomainArg,
    addresses: AddressesArg,
    connect: ConnectOption = None,
    live: LiveOption = False,
    config: ConfigOption = False,
    group: Annotated[
        bool, typer.Option("--group", help="Also attach the other endpoints of each device's IOMMU group.")
    ] = False,
    managed: Annotated[
        Managed, typer.Option("--managed", case_sensitive=False, help="As for 'emit libvirt'.")
    ] = Managed.auto,
    fmt: FormatOption = None,
) -> None:
    """Attach PCI devices to a libvirt domain as <hostdev>, a card's functions kept together.

    To the definition (--config): the guest addresses 'emit libvirt' gives, on slots of bus 0 still free there.

    To the running domain (--live): libvirt picks the addresses; a multifunction card is refused (use --config)."""
    context.state(fmt)
    from ..emit import commands, devices
    from ..emit import libvirt as lv
    from ..hypervisor import libvirt_conn
    from ..result import Result, jsonable

    host = context.CURRENT.host()
    targets = devices.select(commands.scan(host, addresses, group=group), addresses, group=group)
    items = lv.hostdevs(targets, managed=managed, guest_auto=False)
    changes, errors = libvirt_conn.attach(connect, domain, items, live=live, config=config)
    finish(Result("attach", data=[jsonable(c) for c in changes], errors=errors), _view)


def detach_cmd(
    domain: DomainArg,
    addresses: AddressesArg,
    connect: ConnectOption = None,
    live: LiveOption = False,
    config: ConfigOption = False,
    fmt: FormatOption = None,
) -> None:
    """Detach PCI host devices from a libvirt domain."""
    context.state(fmt)
    from ..address import PciAddress
    from ..hypervisor import libvirt_conn
    from ..result import Result, jsonable

    sources = list(dict.fromkeys(PciAddress.parse(a) for a in addresses))
    changes, errors = libvirt_conn.detach(connect, domain, sources, live=live, config=config)
    finish(Result("detach", data=[jsonable(c) for c in changes], errors=errors), _view)


def register(app: typer.Typer) -> None:
    app.command("attach")(attach_cmd)
    app.command("detach")(detach_cmd)
