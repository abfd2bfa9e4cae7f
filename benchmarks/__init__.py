"""Performance and quality benchmarks (not tests): run with ``make bench``."""
