"""Fielding on Flower: a ``FedAvg``-derived strategy running K cluster models, and the
ServerApp / ClientApp that run it in Flower's simulation engine or a real deployment."""
