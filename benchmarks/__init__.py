"""voicegraph benchmarks: ``python -m benchmarks <name> [options]`` runs ``benchmarks/<name>.py``.

Each benchmark prints a table and writes JSON under ``bench-results/`` (or ``--out``). They are
measurements, never pass/fail tests; targets are printed next to the figures.
"""
