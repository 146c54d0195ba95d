"""What the ``midbrain`` subcommands share: the plain help layout, the common options, and
reading the configuration with errors a person reads (exit status 2)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from midbrain.config import MidbrainConfig

# Plain help (click's layout): flags read `--flag / --no-flag` with no type label, and lines
# wrap to the terminal, not to a box 80 columns wide when the output is a pipe or a log.
PLAIN = {"rich_markup_mode": None, "no_args_is_help": True}

DEFAULT_CONFIG = Path("config/demo.toml")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="TOML configuration file.")]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"],
                     typer.Option("--log-level", case_sensitive=False, help="DEBUG, INFO, WARNING or ERROR.")]
StatsFile = Annotated[Optional[Path], typer.Option("--stats-file", help="Write counters here as JSON on exit.")]
# Services that hold secrets start on no configuration by default: the demo's is named on purpose.
ServiceConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="TOML configuration file (`midbrain config new` makes one; config/demo.toml is the demo's).")]


def load(path: Path) -> "MidbrainConfig":
    from midbrain.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        config_error(exc.problems)


def config_error(problems: list[str]) -> NoReturn:
    for line in problems:
        typer.echo(f"config error: {line}", err=True)
    raise typer.Exit(2)


def service_config(path: Optional[Path], service: str) -> "MidbrainConfig":
    """The configuration ``service`` runs on; exit 2 with no --config, or on any secret that
    ships in this repository outside a demo configuration (midbrain/shipped.py)."""
    from midbrain.shipped import refusals

    if path is None:
        typer.echo(f"{service}: refusing to start: no --config given. `midbrain config new --community ID --out DIR` "
                   "makes a deployment configuration; `midbrain demo` runs the demo", err=True)
        raise typer.Exit(2)
    cfg = load(path)
    problems = refusals(cfg, path, service)
    for line in problems:
        typer.echo(f"{service}: refusing to start: {path}: {line}", err=True)
    if problems:
        typer.echo("run `midbrain config new --community ID --out DIR` to make a deployment configuration with "
                   "fresh secrets (docs/security.md)", err=True)
        raise typer.Exit(2)
    return cfg
