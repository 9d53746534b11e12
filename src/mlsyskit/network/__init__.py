"""Networking: flow tooling, NetFlowGen, Cora."""
