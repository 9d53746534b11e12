"""Federated learning: Fielding."""
