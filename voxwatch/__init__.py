"""Voxwatch's composition root: the CLI, configuration, the FastAPI app, and the wiring of the rooms."""

__version__ = "0.1.0"
