"""`python -m sketchkit.cli ...` (used with torchrun)."""

from .app import run

run()
