"""Speed and memory benchmarks; results go to docs/benchmarks.md (never timed tests)."""
