"""Compare, file by file, the batches of the fast reader (`iplos_fast`, xml2arrow) with those of the lxml
reader (`iplos_collect`): every frame equal (values, types, order), the header equal, and for each batch
the raw text of every record equal (found through `Collected.element`).

    python bench/iplos_fast_compare.py FILE_OR_DIR... [--raw] [--persons-per-batch N]

Prints per file `same`, `fallback <reason>` or the first difference; exits 1 on any difference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lxml import etree

from transforms.ingest.readers import iplos_fast
from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.iplos_collect import PERSONS_PER_BATCH, Header, iter_batches, root_layout

FRAMES = ("persons", "services", "stops", "assessments", "scores", "diagnoses")


def compare(path: Path, raw: bool, size: int) -> str:
    try:
        layout = root_layout(path)
    except FileRejected as exc:
        return f"rejected by root_layout ({exc})"
    before = iplos_fast.FALLBACKS.copy()
    fast_header = Header()
    try:
        fast = iplos_fast.fast_batches(path, layout, fast_header, lambda: None, size)
    except FileRejected as exc:
        fast = exc
    if fast is None:
        reason = next(iter((iplos_fast.FALLBACKS - before).keys()), "?")
        return f"fallback {reason}"
    slow_header = Header()
    try:
        slow = []
        for batch in iter_batches(path, layout, slow_header, lambda: None, size):
            texts = None
            if raw:
                texts = {kind: [etree.tostring(batch.element(kind, n), encoding="unicode", with_tail=False)
                                for n in range(frame.height)]
                         for kind, frame in (("person", batch.persons), ("service", batch.services),
                                             ("stop", batch.stops), ("assessment", batch.assessments),
                                             ("diagnosis", batch.diagnoses)) if batch.tags.get(kind, "x")}
            slow.append(({n: getattr(batch, n) for n in FRAMES}, texts))
    except FileRejected as exc:
        slow = exc
    if isinstance(fast, FileRejected) or isinstance(slow, FileRejected):
        return "same (rejected)" if str(fast) == str(slow) else f"DIFFERENT rejection {fast!r} {slow!r}"
    if fast_header != slow_header:
        return f"DIFFERENT header {fast_header} {slow_header}"
    if len(fast) != len(slow):
        return f"DIFFERENT batches {len(fast)} {len(slow)}"
    for b, (f, (s, texts)) in enumerate(zip(fast, slow, strict=True)):
        for name in FRAMES:
            a, c = getattr(f, name), s[name]
            if a.schema != c.schema:
                return f"DIFFERENT schema batch {b} {name}: {a.schema} {c.schema}"
            if not a.equals(c):
                diff = a.with_row_index("_n").join(c.with_row_index("_n"), on=[*a.columns, "_n"], how="anti")
                return f"DIFFERENT values batch {b} {name} ({a.height} vs {c.height} rows): {diff.head(3)}"
        if texts:
            for kind, expected in texts.items():
                got = [etree.tostring(f.element(kind, n), encoding="unicode", with_tail=False)
                       for n in range(len(expected))]
                if got != expected:
                    return f"DIFFERENT raw text batch {b} {kind}"
    return "same"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--raw", action="store_true", help="also compare every record's raw text (slow)")
    parser.add_argument("--persons-per-batch", type=int, default=PERSONS_PER_BATCH)
    args = parser.parse_args()
    files = sorted(p for path in args.paths for p in ([path] if path.is_file() else path.rglob("*.xml")))
    bad = 0
    outcomes: dict[str, int] = {}
    for path in files:
        outcome = compare(path, args.raw, args.persons_per_batch)
        key = outcome.split(" (")[0] if not outcome.startswith("DIFFERENT") else "DIFFERENT"
        outcomes[key] = outcomes.get(key, 0) + 1
        if outcome != "same" or len(files) < 20:
            print(path, outcome, flush=True)
        bad += outcome.startswith("DIFFERENT")
    print(outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
