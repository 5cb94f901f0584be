"""`freqseg cohort MANIFEST|FOLDER`: list a multi-centre cohort (optionally write a manifest)."""

from __future__ import annotations

import argparse

from ..io.cohort import case_info, load_cohort, read_case
from ._common import TerminalProgress, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cohort", help="list the cases of a cohort manifest (.csv) or site folders")
    p.add_argument("path", help="CSV manifest (image, label, site, split) or folder with one sub-folder per site")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--stats",
        action="store_true",
        help="read every volume: size, spacing, intensity percentiles; check each label lies on its image's grid",
    )
    p.add_argument("--write", metavar="CSV", help="write the cohort as a manifest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cohort = load_cohort(args.path)
    rows = []
    progress = TerminalProgress("reading", quiet=not args.stats)
    for i, case in enumerate(cohort):
        row = {
            "case": case.case_id,
            "site": case.site,
            "split": case.split,
            "labeled": case.labeled,
            "image": str(case.image),
            "label": str(case.label) if case.label else "",
        }
        if args.stats:
            info = case_info(case, read_case(case)[0])
            row.update(size=list(info.size), spacing=list(info.spacing), percentiles=info.percentiles)
            progress(i + 1, len(cohort), case.case_id)
        rows.append(row)
    if args.write:
        cohort.write_csv(args.write)
    if args.json:
        print_json({"source": str(cohort.source), "sites": cohort.sites, "cases": rows})
        return 0
    print(f"{len(rows)} cases, {len(cohort.sites)} sites ({', '.join(cohort.sites)}) from {cohort.source}")
    site_w = max([4, *(len(r["site"]) for r in rows)]) + 2
    case_w = max([4, *(len(r["case"]) for r in rows)]) + 2
    for r in rows:
        extra = ""
        if args.stats:
            pct = "  ".join(f"{k} {v:.4g}" for k, v in r["percentiles"].items())
            extra = "  " + "×".join(map(str, r["size"])) + "  " + "×".join(f"{s:.3g}" for s in r["spacing"]) + " mm  " + pct
        print(
            f"{r['site']:<{site_w}}{r['case']:<{case_w}}{r['split']:<8}{'labeled' if r['labeled'] else 'unlabeled':<10}{extra}".rstrip()
        )
    return 0
