"""Test substrate shared by tests/, attacks/, benchmarks/ and the demo: tiny random models (factory)
and trained model families (zoo). Not a pipeline stage."""
