"""Demo report (HTML + Markdown), the README results table, and plotting helpers."""

from mlsyskit.report.demo_report import SystemSection, write_report
from mlsyskit.report.results_table import render_results_table, update_readme

__all__ = ["SystemSection", "render_results_table", "update_readme", "write_report"]
