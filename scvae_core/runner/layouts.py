"""Which local layout is faster, ``--jobs 1 --threads 2`` or ``--jobs 2 --threads 1``: wall times
of ``reproduce`` for a smoke stage under each, interleaved (the executor's DEFAULT_JOBS and
DEFAULT_THREADS rest on this). ``python -m scvae_core.runner.layouts --write results/executor/layouts.json``
writes the file the README and book/scale.md cite. Smoke only: the project's machines train
nothing bigger beside other work."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from .reproduce import reproduce
from ..results import describe_device, provenance, write_json


def time_layouts(layouts: list[tuple[int, int]], stage: str = "table1", preset: str = "smoke",
                 seeds: tuple[int, ...] = (1,), repeats: int = 3, data_dir: str | None = None) -> dict:
    """Wall time of ``reproduce`` for each (jobs, threads) layout, each into a fresh results
    folder, ``repeats`` times, the layouts interleaved (A B A B ...) so that a machine shared
    with other work loads them alike. Seed 1 by default: seed 0 adds the minutes of t-SNE."""
    times: dict[str, list[float]] = {f"{j}x{t}": [] for j, t in layouts}
    load_before = os.getloadavg()[0]  # the others' work on a shared machine
    for _ in range(repeats):
        for jobs, threads in layouts:
            with tempfile.TemporaryDirectory(prefix="scvae-layout-") as results_dir:
                t0 = time.monotonic()
                reproduce([stage], preset, seeds=list(seeds), device="cpu", results_dir=results_dir, data_dir=data_dir,
                          progress=False, jobs=jobs, threads=threads)
                times[f"{jobs}x{threads}"].append(round(time.monotonic() - t0, 2))
    summary = {name: {"runs_s": ts, "mean_s": round(statistics.mean(ts), 2),
                      "sd_s": round(statistics.stdev(ts), 2) if len(ts) > 1 else None} for name, ts in times.items()}
    return {"stage": stage, "preset": preset, "seeds": list(seeds), "repeats": repeats, "layouts": summary,
            "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "machine": describe_device("cpu")}


if __name__ == "__main__":  # python -m scvae_core.runner.layouts: time the local layouts, print them
    parser = argparse.ArgumentParser(description="Time `scvae reproduce` of a smoke stage under --jobs x --threads "
                                     "layouts, interleaved; prints JSON (the README's 'Which local layout' figures). "
                                     "Smoke only: the project's machines train nothing bigger beside other work.")
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="JOBSxTHREADS (default: 1x2 2x1)")
    parser.add_argument("--stage", default="table1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--write", default=None, metavar="PATH",
                        help="also write them as a result file (kind layouts, with provenance), e.g. "
                        "results/executor/layouts.json, which the README and book/scale.md cite")
    args = parser.parse_args()
    doc = time_layouts([tuple(int(v) for v in lay.split("x")) for lay in args.layouts], args.stage,
                       repeats=args.repeats, data_dir=args.data_dir)
    print(json.dumps(doc, indent=1))
    if args.write:
        write_json(Path(args.write), "layouts", {**doc, "provenance": provenance(device="cpu")})
