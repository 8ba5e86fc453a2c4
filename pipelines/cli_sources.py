"""`ktt sources check` and `ktt sources draft`: preparing an EPJ export's source mapping."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _say(*parts: str, end: str = "\n") -> None:
    """Plain output: a report is read and copied, so no wrapping and no markup."""
    sys.stdout.write(" ".join(parts) + end)


def cmd_check(args: argparse.Namespace) -> int:
    from transforms.core.settings import load_settings
    from transforms.ingest.check import check_system, render

    report = check_system(load_settings(args.data_root), args.system)
    _say(render(report))
    return 1 if report.problems.height or any(whole for _, _, whole in report.files) else 0


def cmd_draft(args: argparse.Namespace) -> int:
    from transforms.ingest.draft import draft

    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        _say(f"not a file: {', '.join(missing)}")
        return 2
    text = draft(args.files)
    if args.out is None:
        _say(text, end="")
        return 0
    if args.out.exists() and not args.force:
        _say(f"{args.out} exists; give --force to replace it")
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    _say(f"wrote the draft mapping {args.out}; finish its TODOs, then run "
         "`ktt sources check --system <id>` (docs/source-mappings.md)")
    return 0


def add_parser(sub, add_root) -> None:
    sources = sub.add_parser("sources", help="prepare an EPJ export's source mapping").add_subparsers(
        dest="sources_command", required=True)
    check = sources.add_parser("check", help="read one export through its mapping and report, staging nothing")
    check.add_argument("--system", required=True, help="the system id of the export in config/kommuner.toml")
    add_root(check)
    check.set_defaults(func=cmd_check)
    draft = sources.add_parser("draft", help="write a draft mapping from sample files, for a person to finish")
    draft.add_argument("files", nargs="+", type=Path, help="sample files of one export")
    draft.add_argument("--out", type=Path, default=None, help="where to write it (default: print it)")
    draft.add_argument("--force", action="store_true", help="replace --out if it exists")
    draft.set_defaults(func=cmd_draft)
