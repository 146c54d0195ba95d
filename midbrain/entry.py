"""The ``midbrain`` command's entry point (and ``python -m midbrain``'s).

A long-lived service stops with status 0 on SIGTERM from the process's first moment, so
the handler goes in before the CLI framework and the service's modules load; then the
typer app in :mod:`midbrain.cli` takes the arguments, every subcommand alike.
"""

import sys

from servicekit.lifecycle import stop_cleanly_before_start

# Long-lived services: SIGTERM stops them with status 0 from the process's first moment.
# One-shot commands (config check, user add, keygen, evaluate) keep the default action.
SERVICES = frozenset({"hub", "edge", "bridge", "city", "broker", "simulate"})


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in SERVICES:
        stop_cleanly_before_start()
    from midbrain.cli import app

    app(args=args, prog_name="midbrain")
