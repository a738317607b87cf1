"""Executes the notebooks headless through the "Rust (vl-distill)" kernel.

    kernel/run-notebooks.sh                     # default profile: outputs saved into
                                                # notebooks/*.ipynb, HTML exports beside them
    kernel/run-notebooks.sh --profile smoke     # CI: executed copies in out/notebooks-run/smoke,
                                                # the committed notebooks left alone
    kernel/run-notebooks.sh 03_distill          # only the notebooks whose names start so
    kernel/run-notebooks.sh --fresh             # first delete the profile's work folder, so that
                                                # nothing is loaded from an earlier run
    kernel/run-notebooks.sh --jobs 2            # two notebooks at a time (the smoke run of the
                                                # README's test command)

Any cell error stops the run with a non-zero exit, naming the notebook and
the cell. That includes output on stderr: evcxr reports an error returned by
`?` in a cell only by printing it to stderr (the cell itself "succeeds"),
and the kernel sends vl-distill's progress lines to stdout, so in these
notebooks stderr carries errors only. Each notebook's wall time is printed and written to
`<output folder>/timings.json`.

Each notebook runs in a child process of this script, with a kernel of its
own. Kernels that run one after another share a build folder,
`.kernel-env/evcxr-build` (evcxr's `EVCXR_TMPDIR`; one already set wins), so a kernel start after
the first finds cargo's artifacts where the last one left them (a kernel
start 31 s instead of 66 s on 2 cores). With `--jobs N` each of the N lanes
has its own build folder (`evcxr-build`, `evcxr-build-1`, ...): the lanes
after the first start once the first notebook has finished, from a copy of
its folder, where the crate is built (building it again takes minutes).
A notebook also waits for the notebooks whose results it loads from the
profile's work folder (`NEEDS`), so two kernels never compute the same
experts or distilled set at once. Only this runner shares build folders:
kernels started from Jupyter keep one each.

At the smoke profile a notebook spends most of its time starting its kernel
and compiling cells, on one core. With `--jobs 2` on 2 cores, each kernel
computing on one thread (`RAYON_NUM_THREADS`; two kernels of two threads
each mostly wait on each other's threads), the fourteen notebooks took
636 s against 1074 s one at a time (docs/measurements.md, "the test command"). At the
default profile the cells compute on every core: keep one lane there, which
also keeps the times written into the notebooks free of a neighbour's load.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "rust-vl-distill"

# What each notebook loads from the work folder that another one computes
# (by number prefix): 02's ConvNet experts; 03's distilled set "both", which
# 04-08 and 11 evaluate again or extend; 09's pretrained encoders, experts and
# sets, which 10 and 12 use. Every notebook computes whatever it misses, so
# these only order the runs; a notebook left out of a run is not waited for.
NEEDS = {
    "03": ["02"],
    "04": ["03"],
    "05": ["03"],
    "06": ["03"],
    "07": ["03"],
    "08": ["03"],
    "09": ["02"],
    "10": ["09"],
    "11": ["03"],
    "12": ["09"],
    "14": ["02"],
    "15": ["02", "13"],
}
# Started first when ready: those the others wait for, then the longest.
FIRST = ["01", "02", "09", "03", "13"]


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


def execute_one(book: Path, out_dir: Path, html: bool, cell_timeout: int, profile: str) -> int:
    """Runs one notebook in this process (the child's part)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(book, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=cell_timeout,
        # the first start of a kernel compiles the crate and its
        # dependencies (minutes); later ones hit evcxr's cache
        startup_timeout=3600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        on_cell_executed=check_stderr,
    )
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
    nb.metadata["vl_distill"] = {"profile": profile, "seconds": round(seconds, 1)}
    nbformat.write(nb, out_dir / book.name)
    if html:
        body, _ = HTMLExporter().from_notebook_node(nb)
        (out_dir / f"{book.stem}.html").write_text(body, encoding="utf-8")
    return 0


def prefix(book: Path) -> str:
    return book.name[:2]


def schedule(books, jobs, spawn):
    """Runs `spawn(book, lane)` (which returns a started Popen) for every book,
    at most `jobs` at once, each after the books it needs (`NEEDS`, among
    `books`) have finished, lanes after the first only once the first book
    has. Returns {book: seconds} and the first failed book (or None)."""
    order = sorted(books, key=lambda b: (FIRST.index(prefix(b)) if prefix(b) in FIRST else len(FIRST), b.name))
    present = {prefix(b) for b in books}
    done, seconds = set(), {}
    running = {}  # lane -> (book, process, start)
    failed = None

    def ready(book):
        return all(n in done or n not in present for n in NEEDS.get(prefix(book), []))

    while (order and failed is None) or running:
        # the highest lane first: its first start copies lane 0's build
        # folder, which must happen before lane 0 starts another kernel
        free = [lane for lane in reversed(range(jobs)) if lane not in running and (lane == 0 or done)]
        for lane in free:
            startable = [b for b in order if ready(b)] if failed is None else []
            if not startable:
                break
            book = startable[0]
            order.remove(book)
            print(f"==> {book.name}" + (f" (lane {lane + 1})" if jobs > 1 else ""), flush=True)
            running[lane] = (book, spawn(book, lane), time.monotonic())
        time.sleep(0.2)
        for lane, (book, proc, start) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[lane]
            if rc != 0:
                failed = failed or book
                continue
            done.add(prefix(book))
            seconds[book] = time.monotonic() - start
            print(f"    {book.name}: {seconds[book]:.0f} s", flush=True)
        if not running and order and failed is None and not any(ready(b) for b in order):
            raise RuntimeError("no notebook can start: NEEDS has a circle")
    return seconds, failed


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
    ap.add_argument("--jobs", type=int, default=1,
                    help="notebooks run at once, each with its own kernel (default 1)")
    ap.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    ap.add_argument("--execute-one", metavar="NOTEBOOK", help=argparse.SUPPRESS)
    ap.add_argument("only", nargs="*", help="notebook name prefixes")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    in_place = args.in_place if args.in_place is not None else args.profile == "default"
    html = args.html if args.html is not None else in_place
    out_dir = NOTEBOOKS if in_place else ROOT / "out" / "notebooks-run" / args.profile
    if args.execute_one:
        return execute_one(Path(args.execute_one), out_dir, html, args.cell_timeout, args.profile)

    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if any(b.stem.startswith(p) for p in args.only)]
    if not books:
        print(f"no notebooks match {args.only} in {NOTEBOOKS}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.fresh:
        work = Path(os.environ.get("VL_DISTILL_WORKDIR") or ROOT / "out" / "notebooks") / args.profile
        if work.exists():
            print(f"removing {work}", flush=True)
            shutil.rmtree(work)
    # The kernels inherit the children's environment.
    os.environ["VL_DISTILL_PROFILE"] = args.profile
    build = Path(os.environ.get("EVCXR_TMPDIR") or ROOT / ".kernel-env" / "evcxr-build")
    print(f"{len(books)} notebooks at profile {args.profile}, {args.jobs} at a time", flush=True)

    def spawn(book, lane):
        lane_build = build if lane == 0 else build.with_name(f"{build.name}-{lane}")
        if lane > 0 and not lane_build.exists() and build.exists():
            # the first lane's folder holds the crate built by its first
            # kernel (minutes to build again); lane 0 is between notebooks
            # now, so its folder is not being written
            shutil.copytree(build, lane_build, symlinks=True)
        lane_build.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, EVCXR_TMPDIR=str(lane_build))
        if args.jobs > 1:
            # one thread per kernel: two kernels of two threads each on two
            # cores wait on each other's threads
            env.setdefault("RAYON_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
        cmd = [sys.executable, __file__, "--profile", args.profile,
               "--in-place" if in_place else "--no-in-place", "--html" if html else "--no-html",
               "--cell-timeout", str(args.cell_timeout), "--execute-one", str(book)]
        return subprocess.Popen(cmd, env=env)

    total = time.monotonic()
    seconds, failed = schedule(books, args.jobs, spawn)
    if failed is not None:
        print(f"stopped: {failed.name} failed", file=sys.stderr)
        return 1
    # a partial run updates the times of the notebooks it ran
    timings_file = out_dir / "timings.json"
    merged = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    merged.pop("total", None)
    merged.update({b.stem: round(s, 1) for b, s in seconds.items()})
    merged = dict(sorted(merged.items()))
    merged["total"] = round(sum(merged.values()), 1)
    timings_file.write_text(json.dumps(merged, indent=2) + "\n")
    wall = time.monotonic() - total
    print(f"all {len(books)} notebooks ran in {wall:.0f} s ({args.jobs} at a time); outputs in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
