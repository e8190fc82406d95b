"""Benchmark scripts: `python -m benchmarks.bench_xxx`; each exposes `run(quick) -> list[dict]`."""
