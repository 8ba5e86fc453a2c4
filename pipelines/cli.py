"""`ktt`: the command line a municipality's data engineer uses."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from platformdirs import user_config_dir
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.cli_delivery import add_commands as add_delivery_commands
from transforms.core.config import ConfigError
from transforms.core.layout import DataRoot
from transforms.core.settings import load_settings
from transforms.privacy.keys import KEY_FILE_ENV, MissingKeyError, default_key_file, init_key_file, load_keys

console = Console()


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="data root (default: $KTT_DATA_ROOT or ./data)")


def cmd_keys_init(args: argparse.Namespace) -> int:
    path, created = init_key_file(args.key_file)
    if created:
        console.print(f"created key file [bold]{path}[/] (mode 0600). Back it up: without it pseudonyms "
                      "cannot be reproduced and the identity vault cannot be read.")
    else:
        console.print(f"key file [bold]{path}[/] already exists; left untouched.")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from transforms.synthetic import generate

    settings = load_settings(args.data_root)
    summary = generate(settings.data_root, args.scale, args.seed)
    console.print(str(summary))
    return 0


def _check_keys() -> None:
    load_keys()  # raises MissingKeyError with instructions


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipelines.run import run_ingestion

    settings = load_settings(args.data_root)
    _check_keys()
    years = args.years or list(range(2017, 2026))
    started = time.perf_counter()
    run_ingestion(settings.data_root, years=years)
    _print_ingestion_summary(settings, time.perf_counter() - started)
    return 0


def _print_ingestion_summary(settings, elapsed: float) -> None:
    from transforms.report.summary import ingestion_summary

    s = ingestion_summary(settings)
    console.print(f"\n[bold]Ingestion of {settings.data_root}[/] in {elapsed:.1f} s")
    console.print(f"  municipalities configured: {s.municipalities}")
    console.print(f"  source files read:         {s.files} ({s.files_quarantined_whole} quarantined whole)")
    console.print(f"  records in / staged / quarantined: {s.records_in:,} / {s.staged:,} / {s.quarantined:,}")
    status = "[green]every record accounted for[/]" if s.unbalanced_files == 0 else \
        f"[red]{s.unbalanced_files} files lose records[/]"
    console.print(f"  conservation: {status}")
    kinds = Table(title="records by kind")
    for col in s.records_by_kind.columns:
        kinds.add_column(col, justify="right" if col != "record_kind" else "left")
    for row in s.records_by_kind.iter_rows():
        kinds.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    console.print(kinds)
    rules = Table(title="quarantine by rule")
    rules.add_column("rule_id")
    rules.add_column("records", justify="right")
    for rule, n in s.quarantine_by_rule.iter_rows():
        rules.add_row(rule, f"{n:,}")
    console.print(rules)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _run_backfill(settings, first: dt.date, last: dt.date, kommuner: list[str], dry_run: bool = False) -> float:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.run import Runner

    started = time.perf_counter()
    runner = Runner(settings.data_root)
    stages = 5 if dry_run else 8 if runner.delivers else 7
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"backfill {first}..{last}", total=stages)

        def on_stage(name: str) -> None:
            progress.update(task, description=name, completed=progress.tasks[0].completed + (
                1 if progress.tasks[0].description != f"backfill {first}..{last}" else 0))

        runner.backfill(first, last, kommuner, on_stage=on_stage, dry_run=dry_run)
        progress.update(task, description="done", completed=stages)
    return time.perf_counter() - started


def _print_backfill_summary(settings, elapsed: float) -> None:
    from transforms.report.summary import backfill_summary

    s = backfill_summary(settings)
    table = Table(title=f"Backfill of {settings.data_root} in {elapsed:.0f} s", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in s.items():
        table.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def cmd_backfill(args: argparse.Namespace) -> int:
    from pipelines.run import last_complete_day

    settings = load_settings(args.data_root)
    _check_keys()
    first = args.from_day or settings.cutoff_date
    last = args.to_day or last_complete_day()
    if args.via_daemon:
        if args.dry_run:
            console.print("[red]error:[/] --dry-run runs in-process; materialize backfill_plan in the UI instead")
            return 2
        return _backfill_via_daemon(args.url, settings, first, last, args.kommune or [])
    elapsed = _run_backfill(settings, first, last, args.kommune or [], dry_run=args.dry_run)
    if args.dry_run:
        from pipelines.plan_report import print_plan

        print_plan(console, settings, first, last, elapsed)
        return 0
    _print_backfill_summary(settings, elapsed)
    return 0


def _backfill_via_daemon(url: str, settings, first: dt.date, last: dt.date, kommuner: list[str]) -> int:
    """Submit through the webserver's GraphQL API and follow the backfill until it ends."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.definitions import defs
    from pipelines.remote import RemoteError, backfill_targets, follow_backfill, launch_backfill

    started = time.perf_counter()
    try:
        backfill_id = launch_backfill(url, backfill_targets(defs, first, last), f"ktt backfill {first}..{last}",
                                      kommuner)
        console.print(f"backfill [bold]{backfill_id}[/] submitted to {url} ({url}/runs/b/{backfill_id})")
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("queued", total=None)
            final = follow_backfill(url, backfill_id, lambda p: bar.update(
                task, description=p.status.lower(), completed=p.done, total=p.total or None))
    except RemoteError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if not final.succeeded:
        console.print(f"[red]backfill {backfill_id} ended {final.status}[/]"
                      + (f"; failed runs: {', '.join(final.failed_runs)}" if final.failed_runs else "")
                      + (f"; {final.error}" if final.error else ""))
        return 1
    if settings.root.ledger_db.exists():
        _print_backfill_summary(settings, time.perf_counter() - started)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the demo world (if absent), make a demo key file, run the whole backfill and deliver it to a
    sandbox registry, summarise."""
    from pipelines.run import last_complete_day
    from transforms.core.config import ConfigError
    from transforms.sandbox.server import running_sandbox
    from transforms.synthetic import generate

    os.environ["KTT_ALLOW_SYNTHETIC_IDS"] = "1"
    if not os.environ.get(KEY_FILE_ENV):
        os.environ[KEY_FILE_ENV] = str(Path(user_config_dir("ktt-backfill")) / "demo-keys.json")
    key_path, created = init_key_file()
    if created:
        console.print(f"demo: created its own key file {key_path} (synthetic data only)")
    settings = load_settings(args.data_root)
    if args.regenerate or not (settings.root.raw.exists() and settings.root.kommuner_toml.exists()):
        console.print(f"generating the {args.scale} world into {settings.data_root} ...")
        console.print(str(generate(settings.data_root, args.scale, args.seed)))
        for stale in (*DataRoot.OUTPUT_FOLDERS, "sandbox"):  # the sandbox's memory belongs to the old ledger
            shutil.rmtree(settings.data_root / stale, ignore_errors=True)
    else:
        console.print(f"using the existing data in {settings.data_root} (--regenerate to start over)")
    try:
        files = _demo_sandbox(settings)
    except ConfigError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))} (`ktt demo --regenerate` makes a demo world with HER-ids)",
                      soft_wrap=True)
        return 2
    # the backfill's last stage delivers every message to the sandbox, which runs meanwhile
    with running_sandbox(settings.data_root, log=files.folder / "sandbox.log"):
        elapsed = _run_backfill(settings, settings.cutoff_date, last_complete_day(), [])
    _print_backfill_summary(settings, elapsed)
    _print_demo_delivery(settings, files)
    console.print("Next: `make demo-ui` (the Dagster UI on http://127.0.0.1:3000), `make test`, or open "
                  f"{settings.root.warehouse} read-only with DuckDB.")
    return 0


def _demo_sandbox(settings):
    """A sandbox registry for the demo world on a free loopback port, and the delivery.toml that points at it."""
    from transforms.core.config import load_kommuner
    from transforms.deliver.config import her_ids
    from transforms.sandbox.pki import free_port, init_sandbox

    her_ids(load_kommuner(settings.root.kommuner_toml), settings.root.kommuner_toml)
    files = init_sandbox(settings.data_root, port=free_port())
    console.print(f"sandbox registry on https://127.0.0.1:{files.port} (PKI and memory in {files.folder})")
    return files


def _print_demo_delivery(settings, files) -> None:
    from transforms.deliver.state import read_state
    from transforms.sandbox.registry import accepted_messages

    state = read_state(settings.data_root, "kind = 'stream'")
    counts = dict(state.group_by("state").len().iter_rows())
    console.print(f"[bold]the sandbox registry accepted {len(accepted_messages(files.folder)):,} messages[/] of "
                  f"{state.height:,} written; pending {counts.get('pending', 0) + counts.get('in_flight', 0):,}, "
                  f"rejected {counts.get('rejected', 0):,} (`ktt delivery status --data-root {settings.data_root}`)")


def cmd_ui(args: argparse.Namespace) -> int:
    from pipelines.ui import UiError, default_dagster_home, run_ui

    settings = load_settings(args.data_root)
    home = (args.dagster_home or (Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME")
                                  else default_dagster_home(settings.data_root))).resolve()
    try:
        return run_ui(settings.data_root, home, args.instance, args.host, args.port,
                      announce=lambda line: console.print(line, soft_wrap=True, markup=False, highlight=False))
    except UiError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2


def cmd_resend(args: argparse.Namespace) -> int:
    from transforms.submit.resend import Selection, resend

    settings = load_settings(args.data_root)
    keys = load_keys()
    selection = Selection(kommune=args.kommune, guid=args.guid, since_date=args.since_date,
                          since_seq=args.since_seq,
                          between_dates=tuple(args.between_dates) if args.between_dates else None,
                          between_seqs=tuple(args.between_seqs) if args.between_seqs else None,
                          person_fid=args.person)
    path, count = resend(settings, keys, selection)
    if path is None:
        console.print("no notifications match the selection; nothing written")
        return 1
    console.print(f"wrote {count} notification(s) to {path} (ledger numbering unchanged)")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from transforms.report.review import review_folder, write_review

    settings = load_settings(args.data_root)
    pages = write_review(settings, args.kommune or None)
    for page in pages:
        console.print(f"wrote {page}")
    console.print(f"index: {review_folder(settings) / 'index.html'} (open the pages in any browser; they are "
                  "self-contained)")
    return 0


def cmd_ledger_status(args: argparse.Namespace) -> int:
    from transforms.submit.ledger import integrity_problems, open_ledger, status_table
    from transforms.submit.replay import replay_differences_streamed
    from transforms.tables import EVENTS

    settings = load_settings(args.data_root)
    events = EVENTS.location(settings.data_root)
    with open_ledger(settings.data_root, read_only=True) as con:
        status = status_table(con)
        problems = integrity_problems(con)
        # the whole ledger, not only what came after the last check (the daily check's replay)
        differences = replay_differences_streamed(con, events) if events.exists() else None
    table = Table(title=f"Ledger of {settings.data_root}")
    for column in status.columns:
        table.add_column(column, justify="left" if column == "kommune" else "right")
    for row in status.iter_rows():
        table.add_row(*[str(v) for v in row])
    console.print(table)
    if problems.height:
        console.print(f"[red]{problems.height} integrity problems[/], first: {problems.row(0)}")
        return 1
    console.print("numbering and chain intact")
    if differences is None:
        console.print(f"not replayed: {events} not found (materialize service_events or run `ktt backfill`)")
    elif differences.height:
        first = differences.row(0, named=True)
        console.print(f"[red]replay: {differences.height} event keys differ from the events[/], first: "
                      f"municipality {first['kommune']}, {first['problem']}")
        return 1
    else:
        console.print("every notification replayed: the ledger says exactly what the events say")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ktt", description="KPR KTT backfill: IPLOS and EPJ history "
                                                             "to daily submissions")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="manage the key file").add_subparsers(dest="keys_command", required=True)
    init = keys.add_parser("init", help="create the key file (never overwrites)")
    init.add_argument("--key-file", type=Path, default=None,
                      help=f"path (default: ${KEY_FILE_ENV} or {default_key_file()})")
    init.set_defaults(func=cmd_keys_init)

    gen = sub.add_parser("generate", help="write a synthetic data root with ground truth")
    gen.add_argument("--scale", choices=["demo", "small", "oslo", "national"], default="demo")
    gen.add_argument("--seed", type=int, default=42)
    _add_root(gen)
    gen.set_defaults(func=cmd_generate)

    ing = sub.add_parser("ingest", help="stage yearly extracts and EPJ exports into Parquet")
    ing.add_argument("--years", type=int, nargs="*", help="data years (default 2017-2025)")
    _add_root(ing)
    ing.set_defaults(func=cmd_ingest)

    back = sub.add_parser("backfill", help="run the whole graph for a range of days, in-process")
    back.add_argument("--from", dest="from_day", type=_date, default=None, help="first day (default 2017-01-01)")
    back.add_argument("--to", dest="to_day", type=_date, default=None, help="last day (default yesterday)")
    back.add_argument("--kommune", nargs="*", help="only these reporting municipalities' messages")
    back.add_argument("--via-daemon", action="store_true",
                      help="submit the backfill to a running `ktt ui` (GraphQL) instead of running in-process")
    back.add_argument("--url", default="http://127.0.0.1:3000", help="webserver for --via-daemon")
    back.add_argument("--dry-run", action="store_true",
                      help="plan against the current ledger and print what would be sent (N, M, C by event type "
                           "and day); writes dry_run/plan.parquet, nothing under submissions/ or to the ledger")
    _add_root(back)
    back.set_defaults(func=cmd_backfill)

    res = sub.add_parser("resend", help="copy sent notifications into a new message under outbox/")
    res.add_argument("--kommune", required=True, help="reporting municipality")
    pick = res.add_mutually_exclusive_group(required=True)
    pick.add_argument("--guid", help="one notification by notifikasjonGUID")
    pick.add_argument("--since-date", type=_date, help="every notification of days from this date")
    pick.add_argument("--since-seq", type=int, help="every notification from this sequence number")
    pick.add_argument("--between-dates", type=_date, nargs=2, metavar=("FROM", "TO"))
    pick.add_argument("--between-seqs", type=int, nargs=2, metavar=("FROM", "TO"))
    pick.add_argument("--person", metavar="IDENTIFIER", help="every notification about one person")
    _add_root(res)
    res.set_defaults(func=cmd_resend)

    led = sub.add_parser("ledger", help="the submission ledger").add_subparsers(dest="ledger_command",
                                                                                  required=True)
    status = led.add_parser("status", help="last written day, last sequence number, counts by status")
    _add_root(status)
    status.set_defaults(func=cmd_ledger_status)

    review = sub.add_parser("review", help="one self-contained HTML review page per municipality under reports/")
    review.add_argument("--kommune", nargs="*", help="only these reporting municipalities (default: all)")
    _add_root(review)
    review.set_defaults(func=cmd_review)

    ui = sub.add_parser("ui", help="the Dagster webserver and daemon on 127.0.0.1 (Ctrl-C stops both)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite",
                    help="dagster.yaml template for a new DAGSTER_HOME (postgres reads KTT_DAGSTER_PG_URL)")
    ui.add_argument("--dagster-home", type=Path, default=None,
                    help="instance folder (default: $DAGSTER_HOME or <data root>/.dagster)")
    _add_root(ui)
    ui.set_defaults(func=cmd_ui)

    add_delivery_commands(sub, _add_root, _date)
    from pipelines.cli_sources import add_parser as add_sources_parser

    add_sources_parser(sub, _add_root)

    demo = sub.add_parser("demo", help="generate demo data, run the whole backfill, deliver it to a sandbox registry")
    demo.add_argument("--scale", choices=["demo", "small"], default="demo")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--regenerate", action="store_true", help="regenerate the data even if present")
    _add_root(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except MissingKeyError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except ConfigError as exc:  # a wrong kommuner.toml or source mapping: the message names file and key
        console.print("error:", str(exc), markup=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
