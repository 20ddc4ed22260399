"""The notebooks' parameters (make's PRESET, SEEDS, DEVICE, RESULTS_DIR, RECOMPUTE), checked in one
place: every notebook calls :func:`check_notebook_params` first, so that a wrong value fails
the page with the valid ones instead of rendering empty tables."""
from __future__ import annotations

import glob
import re
from pathlib import Path

from ..presets import PRESETS
from ..results import DEFAULT_RESULTS_DIR, MAX_SEED, RESULTS_MARKER, ResultError, check_writable, make_results_dir
from ..runs import AUTO

RECOMPUTE = (False, True, "missing")
DEVICES = "auto, cpu, cuda, cuda:N"


def holds_results(folder: Path | str) -> bool:
    """Whether ``folder`` holds any run's result file (``<preset>/<model>/seed<k>/*.json``) or a benchmark."""
    folder = Path(folder)
    return any(next(folder.glob(f"{glob.escape(p)}/*/seed*/*.json"), None) for p in PRESETS) or \
        next(folder.glob("bench/*.json"), None) is not None


def _write_problem(results_dir, results_dir_ok) -> str | None:
    """Why a notebook must not write into ``results_dir``, or None: only the repository's results
    folder, a folder scvae created (it holds RESULTS_MARKER) or one yet to be created (scvae then
    creates and marks it) are written into, unless ``results_dir_ok``."""
    folder = Path(results_dir).resolve()
    inside = folder.is_relative_to(DEFAULT_RESULTS_DIR.resolve())
    if results_dir_ok is True or inside or not folder.exists() or (folder / RESULTS_MARKER).is_file():
        return None
    return (f"results_dir {str(results_dir)!r} (make RESULTS_DIR=): {folder} is outside the repository's results "
            f"folder and was not created by scvae (it holds no {RESULTS_MARKER}), so this page will not write "
            "there. To fix: pass the results folder (default: results) or a folder that does not exist yet (scvae "
            "creates it), or results_dir_ok=True (make RESULTS_DIR_OK=True) if you mean this folder")


def check_notebook_params(preset, seeds, device, results_dir, recompute, results_dir_ok=False) -> None:
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
    if results_dir_ok not in (False, True):
        problems.append(f"results_dir_ok {results_dir_ok!r} (make RESULTS_DIR_OK=): choose one of False, True")
    if not isinstance(results_dir, (str, Path)) or not str(results_dir):
        problems.append(f"results_dir {results_dir!r} (make RESULTS_DIR=): a folder, e.g. results")
    elif recompute and (outside := _write_problem(results_dir, results_dir_ok)):
        problems.append(outside)
    elif recompute:
        try:
            make_results_dir(results_dir)
            check_writable(results_dir, 0, option="results_dir (make RESULTS_DIR=)")
        except ResultError as e:
            problems.append(str(e))
    elif not Path(results_dir).is_dir():
        problems.append(f"results_dir {str(results_dir)!r} (make RESULTS_DIR=): no such folder; pass the results "
                        "root (default: results), or RECOMPUTE=missing to create it by running the stages")
    elif not holds_results(results_dir):
        problems.append(f"results_dir {str(results_dir)!r} (make RESULTS_DIR=): holds no results (no "
                        "<preset>/<model>/seed<k>/ result files); pass the results root (default: results), or "
                        "RECOMPUTE=missing to run the stages into it")
    if problems:
        raise ValueError("bad notebook parameters: " + "; ".join(problems))
