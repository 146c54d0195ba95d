"""The ``midbrain`` command. ``midbrain edge`` goes straight to the edge agent
(:mod:`midbrain.edge_main`), so that a gateway's process loads neither the CLI framework
nor the other services' settings (about 4 MB of the agent's 40 MB budget); every other
subcommand goes to the typer app in :mod:`midbrain.cli`."""

import sys

from servicekit.lifecycle import stop_cleanly_before_start

# Long-lived services: SIGTERM stops them with status 0 from the process's first moment.
# One-shot commands (config check, user add, keygen, evaluate) keep the default action.
SERVICES = frozenset({"hub", "edge", "bridge", "city", "broker", "simulate"})


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in SERVICES:
        stop_cleanly_before_start()
    if args[:1] == ["edge"]:
        from midbrain.edge_main import main as edge_main

        sys.exit(edge_main(args[1:]))
    from midbrain.cli import app

    app(args=args, prog_name="midbrain")
