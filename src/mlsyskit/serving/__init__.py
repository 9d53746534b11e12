"""Serving: one LLM inference engine shared by NEO, LAMPS and TRAIL."""
