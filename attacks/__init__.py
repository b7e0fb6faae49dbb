"""Red-team code used by tests and benchmarks: corpora, backdoors, restoration attacks."""
