"""`cloudfetch` command: migrate, metrics, check-config. Exit 2 on a configuration error, with a
message that names the setting."""

from __future__ import annotations

import argparse
import json
import sys

from cloudfetch import metrics, migrate, services
from cloudfetch.config import ConfigError, load_settings


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    before = migrate.current_revision(settings.database_url)
    migrate.upgrade(settings.database_url, args.revision)
    after = migrate.current_revision(settings.database_url)
    print(f"migrate: database at {after} (was {before})")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    svc = services.configure(load_settings())
    with svc.sessions() as session:
        figures = metrics.collect(session, svc.settings.broker_url, args.interval_minutes)
    print(json.dumps(figures, indent=2, sort_keys=True))
    return 0


def _check_config(_args: argparse.Namespace) -> int:
    settings = load_settings()
    print(f"config ok: release {settings.release}, storage {settings.storage_root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudfetch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("migrate", help="apply database migrations (safe on every deploy)")
    run.add_argument("--revision", default="head")
    run.set_defaults(handler=_migrate)
    run = commands.add_parser("metrics", help="print the figures Munin reads, as JSON")
    run.add_argument("--interval-minutes", type=int, default=5, help="window for signups")
    run.set_defaults(handler=_metrics)
    run = commands.add_parser("check-config", help="validate the configuration and exit")
    run.set_defaults(handler=_check_config)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"cloudfetch: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
