"""Drift scenarios on real images: who holds what data at which round.

Clients belong to latent *groups*; a group is a label prototype (0.9 of the mass on a few
classes) and optionally a rotation of the images (feature drift). A client's label mix is drawn
from ``Dirichlet(alpha * prototype)`` when it joins a group, so ``alpha`` sets how homogeneous a
group is (varied heterogeneity). Drift events change clients' groups: scheduled switches, a new
group that appears, continuous random switches, rotated images (feature drift: P(x) moves) or
swapped labels (concept drift: two dominant classes of the client's group exchange their
labels, so P(y|x) moves while P(y) barely does). The whole timeline is drawn
once from the seed, so every strategy sees exactly the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlsyskit.errors import ConfigError
from mlsyskit.federated.fielding.data import Dataset, DatasetName
from mlsyskit.federated.fielding.names import ScenarioName

BASE_GROUPS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 0, 4))
EMERGENT_GROUP: tuple[int, ...] = (2, 5, 8)


@dataclass(frozen=True)
class ScenarioSpec:
    """Everything that defines a scenario; round positions are fractions of ``num_rounds``."""

    name: ScenarioName
    dataset: DatasetName = DatasetName.FASHION_MNIST
    num_clients: int = 100
    num_rounds: int = 200
    train_per_client: int = 300
    test_per_client: int = 100
    alpha: float | None = 50.0
    groups: tuple[tuple[int, ...], ...] = BASE_GROUPS
    switch_at: tuple[float, ...] = ()
    switch_fraction: float = 0.3
    emerge_at: float | None = None
    emerge_fraction: float = 0.2
    continuous_rate: float = 0.0
    rotate_at: float | None = None
    rotate_fraction: float = 0.3
    swap_at: float | None = None
    swap_fraction: float = 0.3
    malicious_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.num_clients < 2 or self.num_rounds < 1:
            raise ConfigError(f"scenario needs >= 2 clients and >= 1 round; got {self}")
        if not 0.0 <= self.malicious_fraction < 1.0:
            raise ConfigError(
                f"malicious fraction must be in [0, 1); got {self.malicious_fraction}"
            )
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"Dirichlet alpha must be > 0; got {self.alpha}")
        # event positions are fractions of num_rounds and sizes fractions of the clients: out
        # of [0, 1] an event would silently never fire or be clamped to every client
        rounds, clients = "a fraction of the rounds", "a fraction of the clients"
        unit: list[tuple[str, float | None, str]] = [
            *((f"switch_at[{j}]", at, rounds) for j, at in enumerate(self.switch_at)),
            ("switch_fraction", self.switch_fraction, clients),
            ("emerge_at", self.emerge_at, rounds),
            ("emerge_fraction", self.emerge_fraction, clients),
            ("continuous_rate", self.continuous_rate, "a probability per round"),
            ("rotate_at", self.rotate_at, rounds),
            ("rotate_fraction", self.rotate_fraction, clients),
            ("swap_at", self.swap_at, rounds),
            ("swap_fraction", self.swap_fraction, clients),
        ]
        for field_name, value, what in unit:
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"ScenarioSpec.{field_name} must be in [0, 1] ({what}); got {value!r}"
                )

    @property
    def label_groups(self) -> tuple[tuple[int, ...], ...]:
        extra = (EMERGENT_GROUP,) if self.emerge_at is not None else ()
        return self.groups + extra

    @property
    def num_variants(self) -> int:
        """Data variants of one label group: plain, rotated and/or label-swapped."""
        return (2 if self.rotate_at is not None else 1) * (2 if self.swap_at is not None else 1)

    @property
    def num_true_groups(self) -> int:
        """Groups an oracle separates: label groups times their variants (rotated images,
        swapped labels)."""
        return len(self.label_groups) * self.num_variants

    def true_group(self, seg: Segment) -> int:
        """The oracle's group of a segment: label group, then rotation, then label swap."""
        variant = int(seg.rotated) + int(seg.swapped) * (2 if self.rotate_at is not None else 1)
        return seg.label_group + len(self.label_groups) * variant


def scenario_spec(name: ScenarioName, **overrides: object) -> ScenarioSpec:
    """The named scenario's parameters, with optional overrides (clients, rounds, ...)."""
    base: dict[ScenarioName, ScenarioSpec] = {
        ScenarioName.SCHEDULED: ScenarioSpec(name, switch_at=(0.25, 0.75), emerge_at=0.5),
        ScenarioName.CONTINUOUS: ScenarioSpec(name, continuous_rate=0.02, emerge_at=0.5),
        ScenarioName.EMERGENT: ScenarioSpec(name, emerge_at=0.5),
        ScenarioName.FEATURE: ScenarioSpec(name, rotate_at=0.5),
        ScenarioName.CONCEPT: ScenarioSpec(name, swap_at=0.5),
        ScenarioName.IID: ScenarioSpec(name, alpha=None),
        ScenarioName.DIGITS: ScenarioSpec(
            name, dataset=DatasetName.DIGITS, num_clients=20, num_rounds=30,
            train_per_client=60, test_per_client=30, switch_at=(0.5,), emerge_at=0.5,
        ),
    }
    return replace(base[name], **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Segment:
    """A stretch of rounds during which a client's data does not change."""

    start_round: int
    label_group: int
    rotated: bool
    swapped: bool = False


@dataclass(frozen=True)
class ClientData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    true_group: int


def swap_pair(labels: tuple[int, ...]) -> tuple[int, int]:
    """The two classes a label-swapped client of this group exchanges: the group's first two
    (both dominant, so P(y) barely moves and only P(y|x) changes)."""
    return labels[0], labels[1]


def _swap(y: np.ndarray, a: int, b: int) -> np.ndarray:
    out = y.copy()
    out[y == a], out[y == b] = b, a
    return out


def _prototype(labels: tuple[int, ...], num_classes: int) -> np.ndarray:
    proto = np.full(num_classes, 0.1 / (num_classes - len(labels)))
    proto[list(labels)] = 0.9 / len(labels)
    return proto


class Scenario:
    """A drawn scenario: each client's timeline of segments and its data in each segment.

    Only the current segment's arrays are kept per client, so memory stays at one client's
    data times N.
    """

    def __init__(self, spec: ScenarioSpec, dataset: Dataset, seed: int) -> None:
        self.spec = spec
        self.dataset = dataset
        self.seed = seed
        n = spec.num_clients
        # liars come from their own stream, and timelines are drawn for every client, so the
        # benign clients' data is identical with and without liars (a paired comparison)
        self.malicious = np.zeros(n, dtype=bool)
        num_bad = round(spec.malicious_fraction * n)
        liar_rng = np.random.default_rng([seed, 6])
        self.malicious[liar_rng.choice(n, num_bad, replace=False)] = True
        self.timelines = self._draw_timelines(np.random.default_rng([seed, 1]))
        classes = range(dataset.num_classes)
        self._by_class_train = [np.flatnonzero(dataset.y_train == c) for c in classes]
        self._by_class_test = [np.flatnonzero(dataset.y_test == c) for c in classes]
        self._cache: dict[int, tuple[int, ClientData]] = {}

    def _draw_timelines(self, rng: np.random.Generator) -> list[list[Segment]]:
        spec, n = self.spec, self.spec.num_clients
        num_base = len(spec.groups)
        current = [Segment(0, int(g), False) for g in rng.permutation(n) % num_base]
        timelines = [[seg] for seg in current]
        events: dict[int, list[str]] = {}
        for frac in spec.switch_at:
            events.setdefault(max(1, int(frac * spec.num_rounds)), []).append("switch")
        if spec.emerge_at is not None:
            events.setdefault(max(1, int(spec.emerge_at * spec.num_rounds)), []).append("emerge")
        if spec.rotate_at is not None:
            events.setdefault(max(1, int(spec.rotate_at * spec.num_rounds)), []).append("rotate")
        if spec.swap_at is not None:
            events.setdefault(max(1, int(spec.swap_at * spec.num_rounds)), []).append("swap")
        emerged = False
        benign = np.arange(n)
        for t in range(1, spec.num_rounds + 1):
            changed: dict[int, Segment] = {}
            for kind in events.get(t, []):
                size = min(len(benign), round(self._fraction(kind) * n))
                chosen = rng.choice(benign, size, replace=False)
                for i in chosen:
                    seg = changed.get(int(i), current[i])
                    if kind == "switch":
                        other = [g for g in range(num_base) if g != seg.label_group]
                        changed[int(i)] = replace(seg, start_round=t,
                                                  label_group=int(rng.choice(other)))
                    elif kind == "emerge":
                        changed[int(i)] = replace(seg, start_round=t, label_group=num_base)
                    elif kind == "rotate":
                        changed[int(i)] = replace(seg, start_round=t, rotated=True)
                    else:
                        changed[int(i)] = replace(seg, start_round=t, swapped=True)
                emerged = emerged or kind == "emerge"
            if spec.continuous_rate > 0:
                active = num_base + (1 if emerged else 0)
                for i in benign[rng.random(len(benign)) < spec.continuous_rate]:
                    seg = changed.get(int(i), current[i])
                    other = [g for g in range(active) if g != seg.label_group]
                    changed[int(i)] = replace(seg, start_round=t,
                                              label_group=int(rng.choice(other)))
            for i, seg in changed.items():
                current[i] = seg
                timelines[i].append(seg)
        return timelines

    def _fraction(self, kind: str) -> float:
        return {
            "switch": self.spec.switch_fraction,
            "emerge": self.spec.emerge_fraction,
            "rotate": self.spec.rotate_fraction,
            "swap": self.spec.swap_fraction,
        }[kind]

    def segment_index(self, client: int, server_round: int) -> int:
        starts = [s.start_round for s in self.timelines[client]]
        return int(np.searchsorted(starts, server_round, side="right") - 1)

    def true_groups(self, server_round: int) -> np.ndarray:
        """(N,) ground-truth group of every client at a round (what the oracle knows)."""
        out = np.empty(self.spec.num_clients, dtype=int)
        for i in range(self.spec.num_clients):
            out[i] = self.spec.true_group(self.timelines[i][self.segment_index(i, server_round)])
        return out

    def client(self, i: int, server_round: int) -> ClientData:
        """Client ``i``'s train and test data at a round (deterministic from the seed)."""
        k = self.segment_index(i, server_round)
        cached = self._cache.get(i)
        if cached is not None and cached[0] == k:
            return cached[1]
        data = self._make(i, k)
        self._cache[i] = (k, data)
        return data

    def _make(self, i: int, k: int) -> ClientData:
        spec, seg = self.spec, self.timelines[i][k]
        rng = np.random.default_rng([self.seed, 2, i, k])
        c = self.dataset.num_classes
        if spec.alpha is None:
            mix = np.full(c, 1.0 / c)
        else:
            # one label mix per (client, group): rotating images keeps it, and a client that
            # returns to a group returns to its old mix
            proto = _prototype(spec.label_groups[seg.label_group], c)
            mix_rng = np.random.default_rng([self.seed, 7, i, seg.label_group])
            mix = mix_rng.dirichlet(spec.alpha * proto)
        x_tr, y_tr = self._draw(rng, mix, spec.train_per_client, train=True)
        x_te, y_te = self._draw(rng, mix, spec.test_per_client, train=False)
        if seg.rotated:
            x_tr, x_te = self._rotate(x_tr), self._rotate(x_te)
        if seg.swapped:
            a, b = swap_pair(spec.label_groups[seg.label_group])
            y_tr, y_te = _swap(y_tr, a, b), _swap(y_te, a, b)
        return ClientData(x_tr, y_tr, x_te, y_te, spec.true_group(seg))

    def _draw(
        self, rng: np.random.Generator, mix: np.ndarray, count: int, train: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        pools = self._by_class_train if train else self._by_class_test
        labels = rng.choice(len(mix), size=count, p=mix)
        idx = np.empty(count, dtype=int)
        for c in np.unique(labels):  # one example per drawn label, uniformly from its class
            mask = labels == c
            idx[mask] = pools[c][rng.integers(len(pools[c]), size=int(mask.sum()))]
        x = self.dataset.x_train if train else self.dataset.x_test
        y = self.dataset.y_train if train else self.dataset.y_test
        return np.ascontiguousarray(x[idx]), y[idx]

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        side = self.dataset.image_side
        img = x.reshape(-1, side, side)
        return np.ascontiguousarray(np.rot90(img, k=1, axes=(1, 2)).reshape(len(x), -1))
