"""The per-metric denoiser: a small LSTM-VAE that reconstructs 8-sample windows.

The paper trains one LSTM-VAE per metric (hidden 4, latent 8, one layer) on normal data; its
reconstruction is a denoised picture of the window: jitter is smoothed away, while a machine that
truly behaves differently still reconstructs differently from its peers. At detection time the
latent mean is decoded (no sampling), so the same input always gives the same output.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mlsyskit.training.minder.errors import NotFittedError

log = logging.getLogger(__name__)


def sliding_windows(x: np.ndarray, window: int) -> np.ndarray:
    """All windows of ``window`` samples along the last axis, step 1 (a view, no copy).

    ``x`` of shape ``(..., T)`` gives ``(..., T - window + 1, window)``.
    """
    if x.shape[-1] < window:
        raise ValueError(f"need at least {window} samples, got {x.shape[-1]}")
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)


def _build_module(input_size: int, hidden_size: int, latent_size: int, num_layers: int) -> Any:
    import torch
    from torch import nn

    class LSTMVAE(nn.Module):
        """Encoder LSTM -> (mu, logvar) -> decoder LSTM fed the latent at every step."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
            self.to_mu = nn.Linear(hidden_size, latent_size)
            self.to_logvar = nn.Linear(hidden_size, latent_size)
            self.decoder = nn.LSTM(latent_size, hidden_size, num_layers, batch_first=True)
            self.to_out = nn.Linear(hidden_size, input_size)

        def forward(
            self, x: torch.Tensor, sample: bool = True
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            _, (h, _) = self.encoder(x)
            mu, logvar = self.to_mu(h[-1]), self.to_logvar(h[-1])
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
            y, _ = self.decoder(z.unsqueeze(1).expand(-1, x.shape[1], -1))
            return self.to_out(y), mu, logvar

    return LSTMVAE()


class WindowDenoiser:
    """LSTM-VAE denoiser with a scikit-learn-like ``fit`` / ``transform``.

    Parameters
    ----------
    window
        Window length in samples (paper: 8).
    input_size
        Values per sample: 1 for a per-metric model, the number of metrics for the
        "one model for all metrics" ablation.
    hidden_size, latent_size, num_layers
        Paper: 4, 8, 1.
    max_windows
        Training windows drawn at random from the data (caps the cost of ``fit``).
    epochs, batch_size, learning_rate, kl_weight, min_steps
        Optimisation; the defaults train in a few seconds on one CPU core. Small inputs get
        more epochs, so that there are at least ``min_steps`` optimiser updates.
    random_state
        Seed of window sampling, initialisation and the reparameterisation noise.
    """

    def __init__(
        self,
        *,
        window: int = 8,
        input_size: int = 1,
        hidden_size: int = 4,
        latent_size: int = 8,
        num_layers: int = 1,
        max_windows: int = 6000,
        epochs: int = 12,
        batch_size: int = 128,
        learning_rate: float = 1e-2,
        kl_weight: float = 1e-3,
        min_steps: int = 400,
        random_state: int = 0,
    ) -> None:
        self.window = window
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.num_layers = num_layers
        self.max_windows = max_windows
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.kl_weight = kl_weight
        self.min_steps = min_steps
        self.random_state = random_state

    def fit(self, windows: np.ndarray) -> WindowDenoiser:
        """Train on normal windows of shape ``(num_windows, window, input_size)`` scaled to [0, 1].

        Returns ``self``; sets ``module_``, ``train_mse_`` (final reconstruction MSE) and
        ``num_restarts_``.
        """
        if windows.ndim != 3 or windows.shape[1:] != (self.window, self.input_size):
            raise ValueError(
                f"windows must have shape (n, {self.window}, {self.input_size}); "
                f"got {windows.shape}"
            )
        rng = np.random.default_rng(self.random_state)
        if len(windows) > self.max_windows:
            windows = windows[rng.choice(len(windows), self.max_windows, replace=False)]
        # A tiny LSTM sometimes collapses to one constant output (every window reconstructs the
        # same), which would make all machines look alike. Detect it and retrain from a derived
        # seed; the number of retries is kept in ``num_restarts_`` and logged.
        data_std = float(windows.std(axis=0).mean())
        for attempt in range(4):
            module, mse = self._train(windows, self.random_state + 1000 * attempt)
            self.module_, self.train_mse_, self.num_restarts_ = module, mse, attempt
            recon_std = float(self.transform(windows[:4000]).std(axis=0).mean())
            if data_std == 0 or recon_std >= 0.25 * data_std:
                break
            log.warning("LSTM-VAE collapsed (reconstruction std %.4f vs data %.4f); retraining "
                        "with another seed", recon_std, data_std)
        return self

    def _train(self, windows: np.ndarray, seed: int) -> tuple[Any, float]:
        import torch

        torch.manual_seed(seed)
        module = _build_module(self.input_size, self.hidden_size, self.latent_size, self.num_layers)
        optimiser = torch.optim.Adam(module.parameters(), lr=self.learning_rate)
        data = torch.as_tensor(np.ascontiguousarray(windows), dtype=torch.float32)
        generator = torch.Generator().manual_seed(seed)
        mse = float("nan")
        # small inputs (a minute of a 4-machine job) get more epochs: at least min_steps updates
        batches = -(-len(data) // self.batch_size)
        epochs = max(self.epochs, -(-self.min_steps // batches))
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=generator)
            total = 0.0
            for start in range(0, len(data), self.batch_size):
                batch = data[order[start : start + self.batch_size]]
                recon, mu, logvar = module(batch)
                rec = torch.mean((recon - batch) ** 2)
                kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
                loss = rec + self.kl_weight * kl
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(rec.detach()) * len(batch)
            mse = total / len(data)
        module.eval()
        return module, mse

    def transform(self, windows: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """Reconstruct windows ``(..., window, input_size)`` from their latent mean (batched)."""
        import torch

        if not hasattr(self, "module_"):
            raise NotFittedError("this WindowDenoiser is not fitted yet; call fit() first")
        lead = windows.shape[:-2]
        flat = np.ascontiguousarray(windows.reshape(-1, self.window, self.input_size))
        out = np.empty(flat.shape, dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(flat), chunk):
                x = torch.as_tensor(flat[start : start + chunk], dtype=torch.float32)
                out[start : start + chunk] = self.module_(x, sample=False)[0].numpy()
        return out.reshape(*lead, self.window, self.input_size)

    def state(self) -> dict[str, Any]:
        """Parameters and weights, for saving with ``torch.save``."""
        if not hasattr(self, "module_"):
            raise NotFittedError("this WindowDenoiser is not fitted yet; call fit() first")
        params = {k: getattr(self, k) for k in (
            "window", "input_size", "hidden_size", "latent_size", "num_layers", "max_windows",
            "epochs", "batch_size", "learning_rate", "kl_weight", "min_steps", "random_state")}
        return {"params": params, "weights": self.module_.state_dict(),
                "train_mse": self.train_mse_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowDenoiser:
        model = cls(**state["params"])
        module = _build_module(model.input_size, model.hidden_size, model.latent_size,
                               model.num_layers)
        module.load_state_dict(state["weights"])
        module.eval()
        model.module_ = module
        model.train_mse_ = float(state["train_mse"])
        return model
