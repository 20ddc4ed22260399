"""Wall times of ``make`` targets, for the performance appendix; standard library only, so that
the Makefile records a time without loading torch or numpy:

    python -m scvae_core.bench.timing TARGET SECONDS    # writes _build/timings/TARGET.json

The file is a result file like any other (``schema_version``, ``kind: "timing"``, provenance),
written atomically; ``scvae bench`` copies the latest ones into its benchmark file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # scvae_core/bench/timing.py -> the repository
TIMINGS = REPO_ROOT / "_build" / "timings"
MAKE_TARGETS = ("book", "test")  # the targets the appendix shows
SCHEMA_VERSION = 1  # results.SCHEMA_VERSION (not imported: results.py loads numpy)


def _git_revision() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def record(target: str, seconds: float, root: Path | str = TIMINGS) -> Path:
    """Store that ``make TARGET`` took ``seconds``; returns the file written."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", target):
        raise ValueError(f"target {target!r}: use a make target name (lower case, digits, '-')")
    if not float(seconds) >= 0:
        raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
    path = Path(root) / f"{target}.json"
    doc = {"schema_version": SCHEMA_VERSION, "kind": "timing", "target": target, "seconds": round(float(seconds), 1),
           "provenance": {"git_revision": _git_revision(),
                          "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def recorded(root: Path | str = TIMINGS, targets: tuple[str, ...] = MAKE_TARGETS) -> dict[str, dict | None]:
    """The latest time of each target with when it was recorded, or None (not measured yet, or
    a file this code did not write)."""
    found: dict[str, dict | None] = {}
    for target in targets:
        try:
            doc = json.loads((Path(root) / f"{target}.json").read_text())
            found[target] = {"seconds": float(doc["seconds"]), "recorded_at": doc["provenance"]["written_at"]} \
                if doc.get("kind") == "timing" and doc.get("schema_version") == SCHEMA_VERSION else None
        except (OSError, ValueError, KeyError, TypeError):
            found[target] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scvae_core.bench.timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="the make target, e.g. book")
    parser.add_argument("seconds", help="its wall time in seconds")
    parser.add_argument("--root", default=str(TIMINGS), help="where timings are kept (default: _build/timings)")
    args = parser.parse_args(argv)
    try:
        path = record(args.target, float(args.seconds), args.root)
    except ValueError as e:  # float() of a non-number, a bad target name or a negative time
        parser.error(f"{e} (e.g. python -m scvae_core.bench.timing book 123)")
    print(f"make {args.target}: {float(args.seconds):.1f} s recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
