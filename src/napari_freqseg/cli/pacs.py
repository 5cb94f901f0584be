"""`freqseg pacs search|pull|push URL ...`: a PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).

Credentials come from FREQSEG_PACS_USER/FREQSEG_PACS_PASSWORD, FREQSEG_PACS_TOKEN or the file
named by FREQSEG_PACS_CONFIG (default ~/.config/freqseg/pacs.toml), never from the command line.
"""

from __future__ import annotations

import argparse

from ._common import TerminalProgress, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs", help="search, pull and push DICOM studies over DICOMweb (credentials from the environment)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    s = verbs.add_parser("search", help="studies and their series (QIDO-RS)")
    s.add_argument("url", help="DICOMweb base URL, e.g. http://pacs:8042/dicom-web")
    s.add_argument("--patient", metavar="ID", help="patient ID (wildcards * and ? as the server allows)")
    s.add_argument("--modality", metavar="MOD", help="only series of this modality, e.g. MR")
    s.add_argument("--study", metavar="UID", help="one study by its UID")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_search)
    pl = verbs.add_parser("pull", help="bring a study's series into OUT/<series UID>/ (WADO-RS; resumes)")
    pl.add_argument("url", help="DICOMweb base URL")
    pl.add_argument("--study", metavar="UID", required=True, help="study UID")
    pl.add_argument("--series", metavar="UID", help="only this series")
    pl.add_argument("-o", "--out", metavar="DIR", required=True, help="folder for the series folders")
    pl.add_argument("--quiet", action="store_true", help="no progress bar")
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.set_defaults(func=run_pull)
    ps = verbs.add_parser("push", help="store DICOM files (e.g. a SEG) on the server (STOW-RS)")
    ps.add_argument("url", help="DICOMweb base URL")
    ps.add_argument("files", nargs="+", metavar="FILE", help="DICOM files or folders of them")
    ps.add_argument("--quiet", action="store_true", help="no progress bar")
    ps.set_defaults(func=run_push)


def run_search(args: argparse.Namespace) -> int:
    from ..pacs import Pacs

    studies = Pacs(args.url).search(patient=args.patient, modality=args.modality, study=args.study)
    if args.json:
        print_json({"url": args.url, "studies": [s.to_dict() for s in studies]})
        return 0
    if not studies:
        print("no study found")
    for st in studies:
        print(f"study {st.study_uid}  patient {st.patient_id} ({st.patient_name})  {st.date}  {st.modalities}  {st.description}")
        for se in st.series:
            n = "?" if se.instances is None else se.instances
            print(f"  series {se.series_uid}  #{se.number or '-'}  {se.modality}  {n} instances  {se.description}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from ..pacs import Pacs

    folders = Pacs(args.url).pull(args.study, args.out, series_uid=args.series,
                                  progress=TerminalProgress("pull", quiet=args.quiet or args.json))  # fmt: skip
    if args.json:
        print_json({"study": args.study, "series_folders": [str(f) for f in folders]})
    else:
        for f in folders:
            print(f"pulled {f}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..pacs import Pacs, dicom_files

    files = dicom_files(args.files)
    n = Pacs(args.url).push(files, progress=TerminalProgress("push", quiet=args.quiet))
    print(f"stored {n} object{'s' * (n != 1)} on {args.url}")
    return 0
