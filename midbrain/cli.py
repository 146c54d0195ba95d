"""``midbrain``: one command, a subcommand per service.

Each command imports what it runs when it runs, and the configuration is read by the one
loader (:mod:`midbrain.configfile`); so ``midbrain edge`` on a small gateway loads the
CLI framework and its own settings, not the hub's or the bridge's.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, Optional

import typer

from servicekit.lifecycle import configure_logging, run_until_signalled, write_json_atomically

if TYPE_CHECKING:
    from midbrain.config import MidbrainConfig

# Plain help (click's layout): flags read `--flag / --no-flag` with no type label, and lines
# wrap to the terminal, not to a box 80 columns wide when the output is a pipe or a log.
PLAIN = {"rich_markup_mode": None, "no_args_is_help": True}
app = typer.Typer(add_completion=False, **PLAIN,  # type: ignore[arg-type]
                  help="midbrain: edge small brains, the community mid-brain and the bridge to the city brain.")
config_app = typer.Typer(**PLAIN, help="Configuration tools.")  # type: ignore[arg-type]
simulate_app = typer.Typer(**PLAIN, help="Hardware and community simulators.")  # type: ignore[arg-type]
app.add_typer(config_app, name="config")
app.add_typer(simulate_app, name="simulate")
user_app = typer.Typer(**PLAIN,  # type: ignore[arg-type]
                       help="Hub accounts: staff, supervisors and admins (stored in the hub's database).")
app.add_typer(user_app, name="user")

DEFAULT_CONFIG = Path("config/demo.toml")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="TOML configuration file.")]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"],
                     typer.Option("--log-level", case_sensitive=False, help="DEBUG, INFO, WARNING or ERROR.")]
StatsFile = Annotated[Optional[Path], typer.Option("--stats-file", help="Write counters here as JSON on exit.")]
# Services that hold secrets start on no configuration by default: the demo's is named on purpose.
ServiceConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="TOML configuration file (`midbrain config new` makes one; config/demo.toml is the demo's).")]


def _load(path: Path) -> "MidbrainConfig":
    from midbrain.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        _config_error(exc.problems)


def _config_error(problems: list[str]) -> NoReturn:
    for line in problems:
        typer.echo(f"config error: {line}", err=True)
    raise typer.Exit(2)


def _service_config(path: Optional[Path], service: str) -> "MidbrainConfig":
    """The configuration ``service`` runs on; exit 2 with no --config, or on any secret that
    ships in this repository outside a demo configuration (midbrain/shipped.py)."""
    from midbrain.shipped import refusals

    if path is None:
        typer.echo(f"{service}: refusing to start: no --config given. `midbrain config new --community ID --out DIR` "
                   "makes a deployment configuration; `midbrain demo` runs the demo", err=True)
        raise typer.Exit(2)
    cfg = _load(path)
    problems = refusals(cfg, path, service)
    for line in problems:
        typer.echo(f"{service}: refusing to start: {path}: {line}", err=True)
    if problems:
        typer.echo("run `midbrain config new --community ID --out DIR` to make a deployment configuration with "
                   "fresh secrets (docs/security.md)", err=True)
        raise typer.Exit(2)
    return cfg


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
        _load(path)  # what was written must load
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

    cfg = _load(file)
    _check_secrets(cfg, file)
    c = cfg.community
    try:
        buses = load_bus_files(cfg.edge.device_files, base=file.parent)
    except ProfileError as exc:
        _config_error([f"{exc.file}: {exc.key}: {exc.reason}"])
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

    cfg = _load(file)
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

    cfg = _load(config)
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

    accounts = Accounts(_load(config).hub.database)
    try:
        for u in accounts.users():
            typer.echo(f"{u['name']}\t{u['role']}\t{u['display']}" + ("\tdisabled" if u["disabled"] else ""))
    finally:
        accounts.close()


@app.command()
def evaluate(data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", help="Folder holding nab/ and skab/ (see its README).")],
             window: Annotated[int, typer.Option(help="Points per window, as the hub scores a metric.")] = 60,
             json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
             calibrate_fpr: Annotated[Optional[float], typer.Option(
                 min=0.0, max=1.0, help="Also choose a threshold per data set on its development files, flagging at "
                 "most this share of their normal windows, and report every split at it.")] = None,
             ) -> None:
    """Evaluate the anomaly model and the z-score baseline on real data (NAB, SKAB)."""
    from hub.evaluate import DataError, evaluate as run

    try:
        result = run(data_dir, window=window, calibrate_fpr=calibrate_fpr)
    except DataError as exc:
        typer.echo(f"evaluate: {exc}", err=True)
        raise typer.Exit(2) from None

    def table(figures: dict[str, dict[str, dict[str, float]]]) -> None:
        typer.echo("data set / split        detector   precision  recall  false-pos  events found")
        for key, by in figures.items():
            for name, f in by.items():
                typer.echo(f"{key:<24} {name[:9]:<10} {f['precision']:>9.3f} {f['recall']:>7.3f} "
                           f"{f['false_positive_rate']:>10.4f}  {f['event_recall']:.3f} of {f['events']}")

    typer.echo(f"model {result['model']}, windows of {result['window_points']} points, "
               f"threshold {result['threshold']}")
    table(result["figures"])  # type: ignore[arg-type]
    calibrated = result.get("calibrated")
    if calibrated:
        for dataset, c in calibrated["data_sets"].items():  # type: ignore[index]
            typer.echo(f"\n{dataset}: threshold {c['threshold']} flags at most {calibrated['false_positive_budget']} "
                       f"of the development files' normal windows")
            table(c["figures"])
    if json_out is not None:
        write_json_atomically(json_out, result)


@app.command()
def hub(config: ServiceConfigOpt = None, log_level: LogLevel = "INFO", stats_file: StatsFile = None) -> None:
    """Run the community mid-brain: ingest, storage, inference, alerts, API and staff page."""
    from hub.inference import ModelError
    from hub.runner import run_hub

    cfg = _service_config(config, "hub")
    configure_logging(log_level)
    try:
        run_until_signalled(lambda stop: run_hub(cfg.hub, cfg.community, cfg.mqtt, stop, stats_file=stats_file))
    except ModelError as exc:
        typer.echo(f"hub: refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # e.g. the HTTP port is taken
        typer.echo(f"hub: cannot start: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def edge(gateway: Annotated[str, typer.Option("--gateway", "-g", help="Gateway id from the config.")],
         config: ConfigOpt = DEFAULT_CONFIG, log_level: LogLevel = "INFO",
         serial_port: Annotated[Optional[list[str]], typer.Option(
             "--serial-port", metavar="DEVICE=PATH", help="Where a serial device is attached (repeatable).")] = None,
         stats_file: StatsFile = None) -> None:
    """Run the edge agent of one gateway: read its devices, publish to the community's broker."""
    from edge.profiles import ProfileError, load_bus_files
    from midbrain.edge_config import ConfigError, load_edge_config

    try:
        cfg = load_edge_config(config)
    except ConfigError as exc:
        _config_error(exc.problems)
    gateways = [g.id for g in cfg.community.gateways]
    if gateway not in gateways:
        _config_error([f"{config}: community.gateways: no gateway {gateway!r} (known: {', '.join(gateways)})"])
    ports = {}
    for item in serial_port or []:
        device, sep, path = item.partition("=")
        if not sep or not device or not path:
            typer.echo(f"--serial-port {item!r}: expected DEVICE=PATH", err=True)
            raise typer.Exit(2)
        ports[device] = path
    try:
        buses = [b for _, b in load_bus_files(cfg.edge.device_files, base=config.parent)]
    except ProfileError as exc:
        _config_error([f"{exc.file}: {exc.key}: {exc.reason}"])
    from edge.runner import run_edge

    configure_logging(log_level)
    run_until_signalled(lambda stop: run_edge(cfg.community, gateway, cfg.mqtt, cfg.edge, stop,
                                              serial_ports=ports, stats_file=stats_file, buses=buses))


@app.command()
def bridge(config: ServiceConfigOpt = None, log_level: LogLevel = "INFO", stats_file: StatsFile = None,
           drain_s: Annotated[float, typer.Option(help="On SIGTERM, keep delivering this long.")] = 10.0) -> None:
    """Run the cloud bridge: privacy-safe summaries to the city platform, durably."""
    from contract.classes import HOUSEHOLD_CLASSES
    from cloud_bridge.service import run_bridge

    cfg = _service_config(config, "bridge")
    configure_logging(log_level)
    if not cfg.bridge.community_key.get_secret_value():
        typer.echo("bridge: refusing to start: bridge.community_key is not set (the key the city holds for this "
                   "community; set MIDBRAIN_BRIDGE__COMMUNITY_KEY)", err=True)
        raise typer.Exit(2)
    households = frozenset(d.id for d in cfg.community.devices if d.device_class in HOUSEHOLD_CLASSES)
    run_until_signalled(lambda stop: run_bridge(cfg.community.id, cfg.mqtt, cfg.bridge, stop,
                                                stats_file=stats_file, drain_s=drain_s, household_devices=households))


@app.command()
def city(config: ServiceConfigOpt = None, log_level: LogLevel = "INFO", stats_file: StatsFile = None) -> None:
    """Run the reference city platform (stands in for the city brain)."""
    from simulators.city.service import run_city

    cfg = _service_config(config, "city")
    configure_logging(log_level)
    run_until_signalled(lambda stop: run_city(cfg.city, stop, stats_file=stats_file))


@app.command()
def keygen() -> None:
    """Make the city's Ed25519 key pair for signing downlink items: the private half goes to
    the city (city.signing_key), the public half to every community (bridge.city_public_key
    and hub.city_public_key)."""
    from contract.downlink import new_signing_key

    private, public = new_signing_key()
    typer.echo(f"MIDBRAIN_CITY__SIGNING_KEY={private}\n"
               f"MIDBRAIN_BRIDGE__CITY_PUBLIC_KEY={public}\nMIDBRAIN_HUB__CITY_PUBLIC_KEY={public}")


@app.command(hidden=False)
def broker(port: Annotated[int, typer.Option(help="TCP port.")] = 1883,
           host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
           log_level: LogLevel = "WARNING") -> None:
    """Run the embedded amqtt MQTT broker (zero-install default; use Mosquitto in production)."""
    from midbrain.embedded_broker import run_embedded_broker

    configure_logging(log_level)
    run_until_signalled(lambda stop: run_embedded_broker(host, port, stop))


@simulate_app.command("community")
def simulate_community(config: ConfigOpt = DEFAULT_CONFIG, log_level: LogLevel = "INFO",
                       ports_file: Annotated[Optional[Path], typer.Option(
                           help="Write {device: pty path} here once serial devices are up.")] = None,
                       stats_file: StatsFile = None) -> None:
    """Simulate every device of the configured community (MQTT sensors, serial sensors, kiosk)."""
    from simulators.community import CommunitySimulator

    cfg = _load(config)
    configure_logging(log_level)

    async def main(stop: asyncio.Event) -> None:
        sim = CommunitySimulator(cfg.community, cfg.mqtt, cfg.simulate)
        typer.echo(json.dumps({"serial_ports": sim.serial_ports}))
        if ports_file is not None:
            write_json_atomically(ports_file, sim.serial_ports)
        try:
            await sim.run(stop)
        finally:
            if stats_file is not None:
                write_json_atomically(stats_file, sim.stats())

    run_until_signalled(main)


@simulate_app.command("city-scale")
def simulate_city_scale(
        communities: Annotated[int, typer.Option(min=1, max=5000, help="Communities, each with its own bridge.")] = 200,
        interval_s: Annotated[float, typer.Option(min=0.1, help="Each community sends a batch this often.")] = 60.0,
        duration_s: Annotated[float, typer.Option(min=1, help="How long to run.")] = 600.0,
        workdir: Annotated[Path, typer.Option(help="Outboxes (and the city's database) go here.")] = Path(
            "var/city-scale"),
        city_url: Annotated[Optional[str], typer.Option(help="A running city platform that holds every "
                                                        "community's key; by default one is started here.")] = None,
        report: Annotated[Optional[Path], typer.Option(help="Also write the report here as JSON.")] = None,
        config: ConfigOpt = DEFAULT_CONFIG, log_level: LogLevel = "WARNING") -> None:
    """Many communities' bridges against one city platform: does its ingest keep up?"""
    from midbrain.city_scale import run_city_scale

    configure_logging(log_level)
    result = asyncio.run(run_city_scale(communities, interval_s, duration_s, workdir, config, city_url))
    typer.echo(f"{result['communities']} communities, {result['batches']} batches delivered, "
               f"{result['delivery_failures']} failed attempts; city: {result.get('city')}")
    typer.echo("minute  batches  lag p50 ms  lag p99 ms  lag max ms  outbox p99 ms  http p99 ms")
    for m in result["per_minute"]:  # type: ignore[union-attr]
        typer.echo(f"{m['minute']:>6}  {m['batches']:>7}  {m['p50_ms']:>10}  {m['p99_ms']:>10}  {m['max_ms']:>10}"
                   f"  {m['seal_p99_ms']:>13}  {m['http_p99_ms']:>11}")
    if report is not None:
        write_json_atomically(report, result)


@simulate_app.command("serial")
def simulate_serial(protocol: Annotated[str, typer.Option(
                        help="dlt645 | cjt188 | modbus | line | pms5003")] = "dlt645",
                    count: Annotated[int, typer.Option(min=1, max=247, help="Devices on the bus.")] = 1,
                    baudrate: Annotated[int, typer.Option(help="Wire speed the replies are paced at.")] = 9600,
                    first_address: Annotated[int, typer.Option(help="Address (or unit id) of the first device.")] = 1,
                    seed: int = 1) -> None:
    """Serial devices on one simulated RS-485 bus (a pseudo-terminal); prints the port to point an agent at.

    Each device answers only to its own address, consecutive from --first-address
    (DL/T 645: 000000000001..., CJ/T 188: 00000000000001..., Modbus: unit ids).
    """
    from simulators import pty_bus
    from simulators.pty_pms5003 import PtyPms5003

    makers = {"dlt645": pty_bus.dlt645_bus, "cjt188": pty_bus.cjt188_bus}
    if protocol not in (*makers, "modbus", "line", "pms5003"):
        typer.echo(f"unknown protocol {protocol!r}; available: dlt645, cjt188, modbus, line, pms5003", err=True)
        raise typer.Exit(2)

    async def main(stop: asyncio.Event) -> None:
        sims: list[pty_bus.PtyBus | PtyPms5003]
        if protocol == "pms5003":
            sims = [PtyPms5003(seed + i).start() for i in range(count)]
        elif protocol == "modbus":
            sims = [pty_bus.modbus_bus(count, first_unit=first_address, seed=seed, baudrate=baudrate).start()]
        elif protocol == "line":
            sims = [pty_bus.line_bus(seed=seed, baudrate=baudrate).start()]
        else:
            sims = [makers[protocol](count, first_address=first_address, seed=seed, baudrate=baudrate).start()]
        for s in sims:
            typer.echo(f"{protocol} x{count if protocol != 'pms5003' else 1} {s.port}", color=False)
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            for s in sims:
                s.stop()

    run_until_signalled(main)


@simulate_app.command("modbus-tcp")
def simulate_modbus_tcp(count: Annotated[int, typer.Option(min=1, max=247, help="Units behind the gateway.")] = 1,
                        port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: a free one).")] = 5020,
                        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
                        first_unit: Annotated[int, typer.Option(min=1, max=247, help="Unit id of the first device.")] = 1,
                        seed: int = 1) -> None:
    """Modbus TCP units behind one simulated TCP-to-RTU gateway; prints host:port to point an agent at.

    Each unit (ids consecutive from --first-unit) has the register map of `simulate serial
    --protocol modbus`; any other unit id is answered with exception 0Bh, as a gateway does.
    """
    from simulators.modbus_tcp import modbus_tcp_gateway

    if first_unit + count - 1 > 247:
        typer.echo(f"--first-unit {first_unit} --count {count} goes past unit id 247", err=True)
        raise typer.Exit(2)

    async def main(stop: asyncio.Event) -> None:
        gateway = modbus_tcp_gateway(count, first_unit=first_unit, seed=seed, host=host, port=port)
        try:
            await gateway.start()
        except OSError as exc:
            typer.echo(f"simulate modbus-tcp: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"modbus_tcp x{count} {gateway.address}", color=False)
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await gateway.stop()

    run_until_signalled(main)


@app.command()
def demo(config: ConfigOpt = DEFAULT_CONFIG,
         duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
         report: Annotated[Optional[Path], typer.Option(help="Write a JSON report of counts per stage on stop.")] = None,
         broker: Annotated[str, typer.Option(help="auto (Mosquitto if installed), mosquitto or amqtt.")] = "auto",
         workdir: Annotated[Optional[Path], typer.Option(help="Where databases and logs go.")] = None,
         log_level: LogLevel = "WARNING") -> None:
    """Run a whole simulated community on this machine: broker, hub, edges, bridge, city, simulators."""
    from midbrain.demo import Demo

    _load(config)  # fail before starting anything
    if broker not in ("auto", "mosquitto", "amqtt"):
        typer.echo(f"--broker {broker!r}: expected auto, mosquitto or amqtt", err=True)
        raise typer.Exit(2)
    configure_logging(log_level)
    try:
        result = Demo(config, broker=broker, workdir=workdir, log_level=log_level).run(duration)
    except RuntimeError as exc:  # a broker or service that could not start; the demo cleaned up
        typer.echo(f"demo: {exc}", err=True)
        raise typer.Exit(1) from None
    if report is not None:
        write_json_atomically(report, result)
        typer.echo(f"report written to {report}")
    raise typer.Exit(0 if result.get("ok") else 1)


if __name__ == "__main__":  # `python -m midbrain` (midbrain.entry) also stops cleanly on an early SIGTERM
    app(prog_name="midbrain")
