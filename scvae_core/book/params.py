"""The notebooks' parameters (make's PRESET, SEEDS, DEVICE, RESULTS_DIR, RECOMPUTE), checked in one
place: every notebook calls :func:`check_notebook_params` first, so that a wrong value fails
the page with the valid ones instead of rendering empty tables."""
from __future__ import annotations

import re
from pathlib import Path

from ..presets import PRESETS
from ..results import MAX_SEED, ResultError, check_writable
from ..runs import AUTO

RECOMPUTE = (False, True, "missing")
DEVICES = "auto, cpu, cuda, cuda:N"


def check_notebook_params(preset, seeds, device, results_dir, recompute) -> None:
    """Raise ValueError naming every bad parameter, its make variable and the valid values."""
    problems = []
    if preset not in (AUTO, *PRESETS):
        problems.append(f"preset {preset!r} (make PRESET=): choose one of {', '.join((AUTO, *PRESETS))}")
    if seeds is not None and (not isinstance(seeds, (list, tuple)) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in seeds)):
        problems.append(f"seeds {seeds!r} (make SEEDS=): integers in 0..{MAX_SEED}, comma-separated "
                        "(SEEDS=0,1), or empty for each stage's preset seeds")
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        problems.append(f"device {device!r} (make DEVICE=): choose one of {DEVICES}")
    elif recompute in RECOMPUTE and recompute:
        from ..train import resolve_device

        try:
            resolve_device(device)  # only a page that computes needs the device to exist
        except ValueError as e:
            problems.append(f"device (make DEVICE=): {e}")
    if recompute not in RECOMPUTE:
        problems.append(f"recompute {recompute!r} (make RECOMPUTE=): choose one of False, True, missing")
    if not isinstance(results_dir, (str, Path)) or not str(results_dir):
        problems.append(f"results_dir {results_dir!r} (make RESULTS_DIR=): a folder, e.g. results")
    elif recompute:
        try:
            check_writable(results_dir, 0, option="results_dir (make RESULTS_DIR=)")
        except ResultError as e:
            problems.append(str(e))
    elif not Path(results_dir).is_dir():
        problems.append(f"results_dir {str(results_dir)!r} (make RESULTS_DIR=): no such folder; pass the results "
                        "root (default: results), or RECOMPUTE=missing to create it by running the stages")
    if problems:
        raise ValueError("bad notebook parameters: " + "; ".join(problems))
