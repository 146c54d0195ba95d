"""``midbrain config`` (new, check, acl) and ``midbrain user`` (add, list): the one-shot tools
an operator runs while setting a community up."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from midbrain.cli_common import DEFAULT_CONFIG, PLAIN, ConfigOpt, config_error, load

if TYPE_CHECKING:
    from midbrain.config import MidbrainConfig

config_app = typer.Typer(**PLAIN, help="Configuration tools.")  # type: ignore[arg-type]
user_app = typer.Typer(**PLAIN,  # type: ignore[arg-type]
                       help="Hub accounts: staff, supervisors and admins (stored in the hub's database).")


@config_app.command("new")
def config_new(community: Annotated[str, typer.Option(help="The community's id, e.g. xihu-lc.")],
               out: Annotated[Path, typer.Option(help="Folder to write community.toml and city.toml in.")],
               name: Annotated[str, typer.Option(help="The community's name, e.g. 西湖留下社区.")] = "",
               city_url: Annotated[str, typer.Option(help="The city platform's URL, for the bridge.")] =
               "http://127.0.0.1:8400") -> None:
    """Write a deployment configuration with fresh secrets: community.toml (hub, bridge, edges)
    and city.toml (the city's private key and operator token), both mode 0600."""
    from contract.ids import Ident
    from pydantic import TypeAdapter, ValidationError

    from midbrain.confignew import write_deployment_config

    try:
        TypeAdapter(Ident).validate_python(community)
    except ValidationError as exc:
        typer.echo(f"config new: --community {community!r}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        made = write_deployment_config(community, out, name=name, city_url=city_url)
    except (FileExistsError, OSError) as exc:
        typer.echo(f"config new: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in (made.community, made.city):
        load(path)  # what was written must load
    typer.echo(f"{made.community}: community {community}: hub, bridge and edges (HMAC key, device salt, "
               f"the city's public key); describe its buildings, gateways and devices in it\n"
               f"{made.city}: for the city platform only (its Ed25519 private key, operator token, "
               f"the community's HMAC key)\nboth mode 0600; rotation of each secret: docs/security.md")


def _check_secrets(cfg: "MidbrainConfig", file: Path) -> None:
    """``config check`` fails on what would stop a service: a secret that ships in this repository."""
    from midbrain.shipped import SERVICE_SECTIONS, refusals

    problems = sorted({line for service in SERVICE_SECTIONS for line in refusals(cfg, file, service)})
    for line in problems:
        typer.echo(f"config error: {file}: {line}", err=True)
    if problems:
        raise typer.Exit(2)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(metavar="FILE", help="Configuration file to validate.")]) -> None:
    """Validate a configuration file; print every error with file, key and reason."""
    from edge.profiles import ProfileError, load_bus_files

    cfg = load(file)
    _check_secrets(cfg, file)
    c = cfg.community
    try:
        buses = load_bus_files(cfg.edge.device_files, base=file.parent)
    except ProfileError as exc:
        config_error([f"{exc.file}: {exc.key}: {exc.reason}"])
    gateways = {g.id for g in c.gateways}
    for path, bus in buses:
        if bus.gateway not in gateways:
            typer.echo(f"config error: {path}: gateway: no gateway {bus.gateway!r} in {file}", err=True)
            raise typer.Exit(2)
    typer.echo(f"{file}: OK — community {c.id} ({c.name}): {len(c.buildings)} buildings, "
               f"{len(c.gateways)} gateways, {len(c.devices)} devices"
               + (f"; {len(buses)} serial buses with {sum(len(b.devices) for _, b in buses)} devices"
                  if buses else ""))


@config_app.command("acl")
def config_acl(file: Annotated[Path, typer.Argument(metavar="FILE", help="Configuration file of the community.")]) -> None:
    """Print the community's Mosquitto ACL (its id, gateways and devices written in; midbrain/broker_acl.py)."""
    from midbrain.broker_acl import render_acl

    cfg = load(file)
    try:
        text = render_acl(cfg.community, cfg.edge.device_topic_prefix, source=str(file))
    except ValueError as exc:
        typer.echo(f"config error: {file}: community: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(text, nl=False)


@user_app.command("add")
def user_add(name: Annotated[str, typer.Argument(metavar="NAME", help="Login name.")],
             role: Annotated[str, typer.Option(help="staff, supervisor or admin.")] = "staff",
             display: Annotated[str, typer.Option(help="Name shown on pages, e.g. 王师傅.")] = "",
             password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
             config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Create an account (the first admin is made this way; later ones too, or through the API)."""
    from hub.accounts import AccountError, Accounts

    cfg = load(config)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else \
        typer.prompt("password", hide_input=True, confirmation_prompt=True)
    accounts = Accounts(cfg.hub.database)
    try:
        accounts.add_user(name, password, role, display, actor="cli")  # type: ignore[arg-type]
    except AccountError as exc:
        typer.echo(f"user add: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        accounts.close()
    typer.echo(f"user {name} ({role}) added to {cfg.hub.database}")


@user_app.command("list")
def user_list(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """List accounts and their roles."""
    from hub.accounts import Accounts

    accounts = Accounts(load(config).hub.database)
    try:
        for u in accounts.users():
            typer.echo(f"{u['name']}\t{u['role']}\t{u['display']}" + ("\tdisabled" if u["disabled"] else ""))
    finally:
        accounts.close()
