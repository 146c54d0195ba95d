"""``midbrain``: one command, a subcommand per service.

Each command imports what it runs when it runs, and the configuration is read by the one
loader (:mod:`midbrain.configfile`); so ``midbrain edge`` on a small gateway loads the
CLI framework and its own settings, not the hub's or the bridge's.

The services and the demo are here; ``midbrain config`` and ``midbrain user`` are in
:mod:`midbrain.cli_config`, ``midbrain simulate`` in :mod:`midbrain.cli_simulate`, and
the options and config reading they share in :mod:`midbrain.cli_common`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from midbrain.cli_common import (DEFAULT_CONFIG, PLAIN, ConfigOpt, LogLevel, ServiceConfigOpt, StatsFile,
                                 config_error, load, service_config)
from midbrain.cli_config import config_app, user_app
from midbrain.cli_simulate import simulate_app
from servicekit.lifecycle import configure_logging, run_until_signalled, write_json_atomically

app = typer.Typer(add_completion=False, **PLAIN,  # type: ignore[arg-type]
                  help="midbrain: edge small brains, the community mid-brain and the bridge to the city brain.")
app.add_typer(config_app, name="config")
app.add_typer(simulate_app, name="simulate")
app.add_typer(user_app, name="user")


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

    cfg = service_config(config, "hub")
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
        config_error(exc.problems)
    gateways = [g.id for g in cfg.community.gateways]
    if gateway not in gateways:
        config_error([f"{config}: community.gateways: no gateway {gateway!r} (known: {', '.join(gateways)})"])
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
        config_error([f"{exc.file}: {exc.key}: {exc.reason}"])
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

    cfg = service_config(config, "bridge")
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

    cfg = service_config(config, "city")
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


@app.command()
def demo(config: ConfigOpt = DEFAULT_CONFIG,
         duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
         report: Annotated[Optional[Path], typer.Option(help="Write a JSON report of counts per stage on stop.")] = None,
         broker: Annotated[str, typer.Option(help="auto (Mosquitto if installed), mosquitto or amqtt.")] = "auto",
         workdir: Annotated[Optional[Path], typer.Option(help="Where databases and logs go.")] = None,
         log_level: LogLevel = "WARNING") -> None:
    """Run a whole simulated community on this machine: broker, hub, edges, bridge, city, simulators."""
    from midbrain.demo import Demo

    load(config)  # fail before starting anything
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
