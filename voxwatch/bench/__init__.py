"""Benchmarks: one module per `voxwatch bench NAME`."""
