"""The book: results -> claims, verdicts, tables, figures and glued numbers, and the checks of the
built book. Reads result files only; never imports torch (tests/test_structure.py)."""

# The front page's table and texts (report.py), those beyond the paper (beyond.py) and beyond MNIST
# (datasets.py) and our own re-runs (reruns.py) register themselves in tables.TABLES and TEXTS.
from . import beyond, datasets, report, reruns  # noqa: E402, F401
