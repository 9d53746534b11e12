"""Peer comparison: how far each machine's (denoised) window is from its peers', per window.

For every window ``t`` and peer group, the pairwise Euclidean distances between machines'
vectors are computed (batched over windows with ``torch.cdist``), each machine's mean distance
to its peers is taken, and the score is that mean minus the group's median. A healthy group
scores near 0 everywhere; a lone outlier scores about its distance from the pack, nearly
independently of the group's size, so one threshold works for 4 and for 1,024 machines.

Exact pairwise distances cost ``O(n^2)`` per window. For groups larger than ``max_peers`` the
mean distance is taken to a fixed, seeded sample of ``max_peers`` reference machines instead (an
unbiased estimate of the same mean), which keeps a 1,024-machine pass linear in ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_indices(groups: Sequence[str]) -> list[np.ndarray]:
    """Machine indices of every peer group, in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    return [np.asarray(v) for v in order.values()]


def peer_scores(
    vectors: np.ndarray,
    groups: Sequence[str],
    max_peers: int | None = 128,
    max_elements: int = 1 << 24,
    random_state: int = 0,
) -> np.ndarray:
    """Normalised dissimilarity of every machine from its peers, per window.

    Parameters
    ----------
    vectors
        ``(num_machines, num_windows, dim)``: one vector per machine and window (a
        reconstruction, a raw window, or a single value with ``dim == 1``).
    groups
        Peer group of each machine; groups of one machine score 0 (no peer to compare with).
    max_peers
        Above this group size, compare with a seeded sample of this many peers (``None``:
        always exact).
    max_elements
        Cap on the size of one batched distance tensor (memory bound for 1,024 machines).

    Returns
    -------
    numpy.ndarray
        ``(num_machines, num_windows)`` scores: mean distance to the group's other machines
        minus the group's median of that mean.
    """
    import torch

    num_machines, num_windows, _ = vectors.shape
    out = np.zeros((num_machines, num_windows), dtype=np.float32)
    data = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
    rng = np.random.default_rng(random_state)
    for idx in group_indices(groups):
        n = len(idx)
        if n < 2:
            continue
        sub = data[torch.as_tensor(idx)].transpose(0, 1)  # (windows, n, dim)
        if max_peers is not None and n > max_peers:
            ref_pos = np.sort(rng.choice(n, max_peers, replace=False))
        else:
            ref_pos = np.arange(n)
        refs = sub[:, torch.as_tensor(ref_pos)]
        # a machine that is its own reference contributes a zero distance: leave it out
        num_others = torch.full((n,), float(len(ref_pos)))
        num_others[torch.as_tensor(ref_pos)] -= 1
        step = max(1, max_elements // (n * len(ref_pos)))
        means = torch.empty((num_windows, n))
        for start in range(0, num_windows, step):
            dist = torch.cdist(
                sub[start : start + step], refs[start : start + step],
                compute_mode="use_mm_for_euclid_dist",
            )
            means[start : start + step] = dist.sum(dim=2) / num_others
        score = means - means.median(dim=1, keepdim=True).values
        out[idx] = score.transpose(0, 1).numpy()
    return out
