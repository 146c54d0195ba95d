"""``midbrain edge``: run one gateway's agent until SIGTERM.

Parsed with argparse and configured through :func:`midbrain.configfile.load_edge_config`
so that the agent's process stays small (see :mod:`midbrain.entry`).
"""

import argparse
import sys
from pathlib import Path

from midbrain.configfile import ConfigError, load_edge_config
from servicekit.lifecycle import configure_logging, run_until_signalled


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="midbrain edge", description="Run the edge agent of one gateway.")
    p.add_argument("--gateway", "-g", required=True, help="Gateway id from the config.")
    p.add_argument("--config", "-c", type=Path, default=Path("config/demo.toml"), help="TOML configuration file.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   type=str.upper, help="DEBUG, INFO, WARNING or ERROR.")
    p.add_argument("--serial-port", action="append", default=[], metavar="DEVICE=PATH",
                   help="Where a serial device is attached (repeatable).")
    p.add_argument("--stats-file", type=Path, help="Write counters here as JSON on exit.")
    return p


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load_edge_config(args.config)
    except ConfigError as exc:
        return _fail("\n".join(f"config error: {line}" for line in exc.problems))
    gateways = [g.id for g in cfg.community.gateways]
    if args.gateway not in gateways:
        return _fail(f"config error: {args.config}: community.gateways: no gateway {args.gateway!r} "
                     f"(known: {', '.join(gateways)})")
    ports = {}
    for item in args.serial_port:
        device, sep, path = item.partition("=")
        if not sep:
            return _fail(f"--serial-port {item!r}: expected DEVICE=PATH")
        ports[device] = path
    from edge.profiles import ProfileError, load_bus_files
    from edge.runner import run_edge

    try:
        buses = [b for _, b in load_bus_files(cfg.edge.device_files, base=args.config.parent)]
    except ProfileError as exc:
        return _fail(f"config error: {exc.file}: {exc.key}: {exc.reason}")
    configure_logging(args.log_level)
    run_until_signalled(lambda stop: run_edge(cfg.community, args.gateway, cfg.mqtt, cfg.edge, stop,
                                              serial_ports=ports, stats_file=args.stats_file, buses=buses))
    return 0
