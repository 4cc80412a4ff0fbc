"""Adapters for voice stacks Voxwatch does not run (optional extras): send it their telemetry, apply its
degradation level inside them."""
