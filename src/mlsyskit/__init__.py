"""mlsyskit: nine research systems for ML infrastructure and networking."""

__version__ = "0.1.0"
