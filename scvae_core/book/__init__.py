"""The book: results -> claims, verdicts, tables, figures and glued numbers, and the checks of the
built book. Reads result files only; never imports torch (tests/test_structure.py)."""
