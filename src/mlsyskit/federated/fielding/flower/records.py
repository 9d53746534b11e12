"""Model parameters <-> Flower records.

Parameters travel as lists of NumPy arrays inside the core; on the wire they keep the keys of
the user's initial ``ArrayRecord`` (e.g. a torch ``state_dict``'s names), so a user's ClientApp
can load what it receives with ``record.to_torch_state_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import Array, ArrayRecord

from mlsyskit.federated.fielding.params import Params


def to_record(params: Params, keys: Sequence[str] | None = None) -> ArrayRecord:
    """``keys`` default to ``"0"``, ``"1"``, ... (what ``ArrayRecord(list_of_arrays)`` uses)."""
    names = list(keys) if keys is not None else [str(j) for j in range(len(params))]
    return ArrayRecord({name: Array(a) for name, a in zip(names, params, strict=True)})


def from_record(record: ArrayRecord) -> Params:
    """The arrays in the record's order."""
    return [arr.numpy() for arr in record.values()]


def pack_clusters(models: list[Params], keys: Sequence[str] | None = None) -> ArrayRecord:
    """All cluster models in one record, keys ``cluster-K/NAME`` (what the strategy returns as
    the round's arrays, so ``Result.arrays`` holds every cluster model)."""
    names = list(keys) if keys is not None else [str(j) for j in range(len(models[0]))]
    return ArrayRecord({
        f"cluster-{k}/{name}": Array(a)
        for k, m in enumerate(models) for name, a in zip(names, m, strict=True)
    })


def unpack_clusters(record: ArrayRecord) -> list[Params]:
    """Inverse of :func:`pack_clusters` (array order within a cluster is preserved)."""
    by_cluster: dict[int, list[Array]] = {}
    for key, arr in record.items():
        cluster = int(key.removeprefix("cluster-").partition("/")[0])
        by_cluster.setdefault(cluster, []).append(arr)
    return [[a.numpy() for a in by_cluster[k]] for k in sorted(by_cluster)]
