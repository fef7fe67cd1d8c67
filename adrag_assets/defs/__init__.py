"""Dagster wiring only, one file per stage; `definitions.py` loads them all."""
