"""`ktt deliver`, `ktt delivery status`, `ktt sandbox init` and `ktt sandbox`: the CLI side of delivery."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transforms.core.config import ConfigError
from transforms.core.settings import load_settings

console = Console()


def _error(exc: Exception) -> None:
    """One line, unwrapped, with the file and setting as written (`[kneik-api]` is not rich markup here)."""
    console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)


def cmd_deliver(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from transforms.deliver.config import load_delivery_config
    from transforms.deliver.runner import DeliveryOrderError, DeliveryRun
    from transforms.deliver.state import read_state

    settings = load_settings(args.data_root)
    try:
        config = load_delivery_config(settings.data_root)
        if config.transport == "none":
            console.print(f"transport is \"none\" ({config.path}): messages are written, not sent. Set transport "
                          f"in {config.path} (or run `ktt sandbox init` to rehearse with the sandbox).")
            return 0
        kinds = "resend" if args.outbox else "stream"
        waiting = read_state(settings.data_root, "kind = ? AND state <> 'accepted'", [kinds]).height
        run = DeliveryRun(settings, config)
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"deliver ({config.transport})", total=waiting or None)
            report = run.run(args.kommune or None, args.from_day, args.to_day, args.retry_rejected, args.outbox,
                             progress=lambda _k, n: bar.advance(task, n))
    except (ConfigError, DeliveryOrderError) as exc:
        _error(exc)
        return 2
    table = Table(title=f"Delivery via {report.transport}")
    for column in ("kommune", "accepted now", "left", "rejected", "problem"):
        table.add_column(column, justify="right" if column in ("accepted now", "left") else "left")
    for kommune, result in report.municipalities.items():
        rejected = "" if result.rejected is None else str(result.rejected.day or result.rejected.file)
        table.add_row(kommune, f"{result.accepted:,}", f"{result.remaining:,}", rejected, escape(result.problem))
    console.print(table)
    if report.fatal:
        console.print(f"[red]stopped:[/] {escape(report.fatal)}", soft_wrap=True)
        return 2
    if report.rejected:
        console.print("[red]a rejected message stops its municipality[/]: see `ktt delivery status`; after the "
                      "fix, `ktt deliver --kommune N --retry-rejected`")
        return 1
    if report.remaining:
        console.print(f"{report.remaining:,} message(s) still pending: the next run (or the schedule) retries them")
        return 1
    return 0


def cmd_delivery_status(args: argparse.Namespace) -> int:
    from transforms.deliver.config import load_delivery_config
    from transforms.deliver.state import LedgerSession
    from transforms.deliver.status import delivery_status

    settings = load_settings(args.data_root)
    if not settings.root.ledger_db.exists():
        console.print(f"no ledger in {settings.data_root} yet: nothing written, nothing delivered")
        return 0
    try:
        transport = load_delivery_config(settings.data_root).transport
    except ConfigError as exc:
        transport = f"misconfigured: {escape(str(exc))}"
    with LedgerSession(settings.data_root, announce=True) as session:
        status = session.run(delivery_status)
    table = Table(title=f"Delivery of {settings.data_root} (transport {transport})")
    for column in ("kommune", "last accepted day", "last seq", "accepted", "pending", "rejected", "waiting on"):
        table.add_column(column, justify="right" if column in ("last seq", "accepted", "pending", "rejected")
                         else "left", overflow="fold")
    for row in status.iter_rows(named=True):
        waiting = "" if row["waiting_day"] is None else \
            f"{row['waiting_day']} {row['waiting_state']}" + (f" ({row['code']})" if row["code"] else "")
        table.add_row(row["kommune"], str(row["last_accepted_day"] or ""), str(row["last_accepted_seq"] or ""),
                      f"{row['accepted']:,}", f"{row['pending'] + row['in_flight']:,}", f"{row['rejected']:,}",
                      waiting)
    console.print(table)
    rejected = status.filter(status["rejected"] > 0)
    for row in rejected.iter_rows(named=True):
        console.print(f"[red]{row['kommune']}: the message of {row['waiting_day']} was rejected[/] "
                      f"({escape(str(row['code']))}: {escape(str(row['text']))}); after the fix: ktt deliver "
                      f"--kommune {row['kommune']} --retry-rejected", soft_wrap=True)
    return 1 if rejected.height else 0


def cmd_sandbox_init(args: argparse.Namespace) -> int:
    from transforms.sandbox.pki import init_sandbox

    settings = load_settings(args.data_root)
    try:
        files = init_sandbox(settings.data_root, args.port, args.secrets_dir, renew=args.renew)
    except ConfigError as exc:
        _error(exc)
        return 2
    console.print(f"sandbox PKI and settings in {files.folder}; client secrets (mode 0600) in {files.secrets}; "
                  f"wrote {settings.root.delivery_toml}. Start it with `ktt sandbox`, then `ktt deliver`.")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from transforms.sandbox.server import serve

    settings = load_settings(args.data_root)
    if not settings.root.sandbox.joinpath("sandbox.toml").exists():
        console.print(f"[red]error:[/] no sandbox in {settings.data_root}: run `ktt sandbox init` first")
        return 2
    serve(settings.data_root, args.port)
    return 0


def add_commands(sub, add_root: Callable[[argparse.ArgumentParser], None],
                 date: Callable[[str], dt.date]) -> None:
    deliver = sub.add_parser("deliver", help="send written messages to the registry (config/delivery.toml)")
    deliver.add_argument("--kommune", nargs="*", help="only these municipalities")
    deliver.add_argument("--from", dest="from_day", type=date, default=None,
                         help="first day (refused if an earlier message is not accepted yet)")
    deliver.add_argument("--to", dest="to_day", type=date, default=None, help="last day to send")
    deliver.add_argument("--retry-rejected", action="store_true",
                         help="send a rejected message again (after its cause was fixed)")
    deliver.add_argument("--outbox", action="store_true", help="send the resent messages under outbox/")
    add_root(deliver)
    deliver.set_defaults(func=cmd_deliver)

    delivery = sub.add_parser("delivery", help="delivery state").add_subparsers(dest="delivery_command",
                                                                                 required=True)
    status = delivery.add_parser("status", help="per municipality: last accepted day and number, pending, "
                                                "rejected with code and text")
    add_root(status)
    status.set_defaults(func=cmd_delivery_status)

    sandbox = sub.add_parser("sandbox", help="the local sandbox registry (HTTPS on 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=None, help="port (default: the one `sandbox init` chose)")
    add_root(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)
    init = sandbox.add_subparsers(dest="sandbox_command").add_parser(
        "init", help="write the sandbox's test PKI, the client's secrets and config/delivery.toml")
    init.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    init.add_argument("--secrets-dir", type=Path, default=None,
                      help="where the client's private JWK and enterprise key go (outside the data root)")
    init.add_argument("--renew", action="store_true", help="make a new PKI even if one exists")
    add_root(init)
    init.set_defaults(func=cmd_sandbox_init)
