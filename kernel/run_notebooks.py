"""Executes the notebooks headless through the "Rust (vl-distill)" kernel.

    kernel/run-notebooks.sh                     # default profile: outputs saved into
                                                # notebooks/*.ipynb, HTML exports beside them
    kernel/run-notebooks.sh --profile smoke     # CI: executed copies in out/notebooks-run/smoke,
                                                # the committed notebooks left alone
    kernel/run-notebooks.sh 03_distill          # only the notebooks whose names start so
    kernel/run-notebooks.sh --fresh             # first delete the profile's work folder, so that
                                                # nothing is loaded from an earlier run

Any cell error stops the run with a non-zero exit, naming the notebook and
the cell. That includes output on stderr: evcxr reports an error returned by
`?` in a cell only by printing it to stderr (the cell itself "succeeds"),
and the kernel sends vl-distill's progress lines to stdout, so in these
notebooks stderr carries errors only. Each notebook's wall time is printed and written to
`<output folder>/timings.json`.

The kernels it starts share one build folder, `.kernel-env/evcxr-build`
(evcxr's `EVCXR_TMPDIR`; an `EVCXR_TMPDIR` already set wins), so a kernel
start after the first finds cargo's artifacts where the last one left them
(a kernel start 31 s instead of 66 s on 2 cores; cells compile faster too:
in a fresh-clone CI run the notebooks after the first took 26-111 s each
instead of 79-176 s, all thirteen at smoke 16.7 min instead of about 30).
Only this runner does that: kernels started from Jupyter keep a folder of
their own, as two of them may run at once.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "rust-vl-distill"


class StderrOutput(Exception):
    """A cell wrote to stderr (evcxr's only report of a `?` error)."""


def check_stderr(cell, cell_index, **_):
    text = "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    )
    if text.strip():
        raise StderrOutput(f"cell {cell_index} wrote to stderr:\n{text.strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default", help="smoke, default or paper")
    ap.add_argument(
        "--in-place",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save outputs into notebooks/ (default: only at the default profile)",
    )
    ap.add_argument("--html", action=argparse.BooleanOptionalAction, default=None,
                    help="write HTML exports (default: with --in-place)")
    ap.add_argument("--fresh", action="store_true",
                    help="delete the profile's work folder first (experts, distillations), "
                         "so every result is computed by this run")
    ap.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    ap.add_argument("only", nargs="*", help="notebook name prefixes")
    args = ap.parse_args()
    in_place = args.in_place if args.in_place is not None else args.profile == "default"
    html = args.html if args.html is not None else in_place

    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if any(b.stem.startswith(p) for p in args.only)]
    if not books:
        print(f"no notebooks match {args.only} in {NOTEBOOKS}", file=sys.stderr)
        return 2
    out_dir = NOTEBOOKS if in_place else ROOT / "out" / "notebooks-run" / args.profile
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.fresh:
        work = Path(os.environ.get("VL_DISTILL_WORKDIR") or ROOT / "out" / "notebooks") / args.profile
        if work.exists():
            print(f"removing {work}", flush=True)
            shutil.rmtree(work)
    # The kernel inherits this process's environment.
    os.environ["VL_DISTILL_PROFILE"] = args.profile
    # one kernel at a time here, so they can share evcxr's build folder
    build = Path(os.environ.setdefault("EVCXR_TMPDIR", str(ROOT / ".kernel-env" / "evcxr-build")))
    build.mkdir(parents=True, exist_ok=True)
    timings = {}
    total = time.monotonic()
    for book in books:
        nb = nbformat.read(book, as_version=4)
        client = NotebookClient(
            nb,
            kernel_name=KERNEL,
            timeout=args.cell_timeout,
            # the first start of a kernel compiles the crate and its
            # dependencies (minutes); later ones hit evcxr's cache
            startup_timeout=3600,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
            on_cell_executed=check_stderr,
        )
        print(f"==> {book.name} at profile {args.profile}", flush=True)
        start = time.monotonic()
        try:
            client.execute()
        except (CellExecutionError, StderrOutput) as e:
            failed = out_dir / f"{book.stem}.failed.ipynb"
            nbformat.write(nb, failed)
            print(f"FAILED: {book.name}: {e}", file=sys.stderr)
            print(f"partial outputs in {failed}", file=sys.stderr)
            return 1
        seconds = time.monotonic() - start
        timings[book.stem] = round(seconds, 1)
        nb.metadata["vl_distill"] = {"profile": args.profile, "seconds": round(seconds, 1)}
        nbformat.write(nb, out_dir / book.name)
        if html:
            body, _ = HTMLExporter().from_notebook_node(nb)
            (out_dir / f"{book.stem}.html").write_text(body, encoding="utf-8")
        print(f"    {book.name}: {seconds:.0f} s", flush=True)
    # a partial run updates the times of the notebooks it ran
    timings_file = out_dir / "timings.json"
    merged = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    merged.pop("total", None)
    merged.update(timings)
    merged = dict(sorted(merged.items()))
    merged["total"] = round(sum(merged.values()), 1)
    timings_file.write_text(json.dumps(merged, indent=2) + "\n")
    timings["total"] = round(time.monotonic() - total, 1)
    print(f"all {len(books)} notebooks ran in {timings['total']:.0f} s; outputs in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
