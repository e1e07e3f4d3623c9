"""`python -m bench`: the same as `tasksync bench`."""

from bench.cli import bench

bench(prog_name="python -m bench")
