"""Tests of NEO (mlsyskit.serving.neo)."""
