"""``midbrain simulate``: hardware and community simulators (serial devices on
pseudo-terminals, a Modbus TCP gateway, a simulated community, many communities at a city)."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from midbrain.cli_common import DEFAULT_CONFIG, PLAIN, ConfigOpt, LogLevel, StatsFile, load
from servicekit.lifecycle import configure_logging, run_until_signalled, write_json_atomically

simulate_app = typer.Typer(**PLAIN, help="Hardware and community simulators.")  # type: ignore[arg-type]


@simulate_app.command("community")
def simulate_community(config: ConfigOpt = DEFAULT_CONFIG, log_level: LogLevel = "INFO",
                       ports_file: Annotated[Optional[Path], typer.Option(
                           help="Write {device: pty path} here once serial devices are up.")] = None,
                       stats_file: StatsFile = None) -> None:
    """Simulate every device of the configured community (MQTT sensors, serial sensors, kiosk)."""
    from simulators.community import CommunitySimulator

    cfg = load(config)
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
