"""`jaxtrain report` / `python -m jaxtrain.report`: one run's page, or a page comparing
several runs (jaxtrain.report)."""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxtrain.cli import start
from jaxtrain.report import REPORT_FILE, build_comparison, build_report
from jaxtrain.run_files import load_run


def write_pages() -> list[str]:
    """The page of one --workdir, or the comparison of several; the pages written."""
    workdirs = flags.FLAGS.workdir
    if len(workdirs) == 1:
        return [build_report(workdirs[0])]
    # A comparison links each run's page: one is written where a run has none, and an
    # existing page is left as it is (`--workdir=RUN` alone rewrites it).
    runs = [load_run(w) for w in workdirs]
    systems = sorted({r.system for r in runs})
    if len(systems) > 1:
        print(f"jaxtrain: warning: these runs are of different systems "
              f"({', '.join(systems)}): metrics of one name measure different things",
              file=sys.stderr)
    pages = [build_report(r.workdir) for r in runs
             if not os.path.exists(os.path.join(r.workdir, REPORT_FILE))]
    return [*pages, build_comparison(runs, os.path.abspath(flags.FLAGS.out))]


if __name__ == "__main__":
    flags.DEFINE_multi_string("workdir", None, "A run's workdir (finished or running); "
                              "repeat to compare several runs.")
    flags.DEFINE_string("out", "comparison.html", "The comparison page (several --workdir).")
    start(lambda: print(*write_pages(), sep="\n"), required=("workdir",), doc=__doc__)
