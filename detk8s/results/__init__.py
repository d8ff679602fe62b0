"""Results of runs: metrics parsed from framework output, eval.json, and the summary table."""
