"""The studies: the paper protocol and its peers, the loop study, ablations and diagnostics, run from the
repository root as ``python -m benchmarks.<name>``; results in ``benchmarks/results/<study>/``."""
