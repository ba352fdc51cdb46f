"""verimarket's benchmark suite: each figure beside its baseline, measured in the same run.

``bench.suite`` runs the rows and writes the report (``verimarket bench``); ``bench.report``
holds the pure logic (ratios, target verdicts, JSON and markdown); the ``rows_*`` modules
measure. ``prover_bench.py`` and ``api_load.py`` are also scripts of their own.
"""
