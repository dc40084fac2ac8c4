"""The NCF family (He et al., WWW 2017) — GMF, MLP and NeuMF — as batched per-client maths.

Federated training needs every selected client's own copy of the model, and a Python loop over
clients is far too slow. So each parameter carries a leading client axis: ``(C, ...)``; one
forward/backward computes every client's gradient at once, and clients never mix because each
one's loss only touches its own slice.

Parameters, by where they live:
- item tables ``item_gmf`` / ``item_mlp``: (n_items, d), global, updated row-sparsely;
- dense ``mlp.{k}.weight`` (in, out), ``mlp.{k}.bias`` (out,), ``out.weight`` (h,),
  ``out.bias`` (1,): global;
- user tables ``user_gmf`` / ``user_mlp``: (d,) per client, private to the client (never sent).
"""

from __future__ import annotations

# The maths that needs torch (the global model's initialisation, the batched logits) is in
# ``net.py``, which imports this module and never the other way: the aggregator reads NCFSpec and
# the channel masks but never trains, and a torch import costs seconds per process.

import math
from dataclasses import dataclass

import numpy as np

from configs.schema import ModelConfig

ITEM_TABLE = {"gmf": ("item_gmf",), "mlp": ("item_mlp",), "neumf": ("item_gmf", "item_mlp")}
USER_TABLE = {"item_gmf": "user_gmf", "item_mlp": "user_mlp"}


@dataclass(frozen=True)
class NCFSpec:
    kind: str
    dim: int
    mlp_layers: tuple[int, ...]
    n_items: int
    init_std: float = 0.1

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_items: int) -> "NCFSpec":
        return cls(cfg.kind, cfg.embedding_dim, tuple(cfg.mlp_layers), n_items, cfg.init_std)

    @property
    def item_tables(self) -> tuple[str, ...]:
        return ITEM_TABLE[self.kind]

    @property
    def user_tables(self) -> tuple[str, ...]:
        return tuple(USER_TABLE[t] for t in self.item_tables)

    @property
    def uses_mlp(self) -> bool:
        return self.kind in ("mlp", "neumf")

    def dense_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        head = 0
        if self.kind in ("gmf", "neumf"):
            head += self.dim
        if self.uses_mlp:
            width = 2 * self.dim
            for k, out in enumerate(self.mlp_layers):
                shapes[f"mlp.{k}.weight"] = (width, out)
                shapes[f"mlp.{k}.bias"] = (out,)
                width = out
            head += width
        shapes["out.weight"] = (head,)
        shapes["out.bias"] = (1,)
        return shapes

    def model_bytes(self) -> int:
        """float32 bytes of everything a client downloads (item tables + dense weights)."""
        dense = sum(math.prod(s) for s in self.dense_shapes().values())
        return 4 * (len(self.item_tables) * self.n_items * self.dim + dense)

    def dense_bytes(self) -> int:
        return 4 * sum(math.prod(s) for s in self.dense_shapes().values())


def channel_slices(spec: NCFSpec, fraction: float) -> dict[str, tuple[slice, ...]]:
    """HeteroFL's sub-model of width ``fraction`` (RF²'s Channel on NCF): every MLP hidden layer
    but the first keeps its leading ceil(fraction·width) channels; the user and item vectors, the
    first layer and GMF's half of the output layer stay whole. Per dense parameter, the leading
    slice the narrow model holds (NeuMF's output weight is [GMF part ; MLP part])."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"width fraction must be in (0, 1], got {fraction}")
    if not spec.uses_mlp:
        raise ValueError("GMF has no hidden layer to narrow")
    # Rounded before the ceiling, as click.channel_widths: a float32 0.25 times 16 must give 4.
    widths = [w if k == 0 else math.ceil(round(fraction * w, 5)) for k, w in enumerate(spec.mlp_layers)]
    slices: dict[str, tuple[slice, ...]] = {}
    width_in = 2 * spec.dim
    for k, width in enumerate(widths):
        slices[f"mlp.{k}.weight"] = (slice(0, width_in), slice(0, width))
        slices[f"mlp.{k}.bias"] = (slice(0, width),)
        width_in = width
    gmf = spec.dim if spec.kind == "neumf" else 0
    slices["out.weight"] = (slice(0, gmf + width_in),)
    slices["out.bias"] = (slice(0, 1),)
    return slices


def channel_masks(spec: NCFSpec, fraction: float) -> dict[str, np.ndarray]:
    """Bool masks (*shape) of the dense entries a client of width ``fraction`` holds and trains."""
    masks = {}
    for name, index in channel_slices(spec, fraction).items():
        masks[name] = np.zeros(spec.dense_shapes()[name], dtype=bool)
        masks[name][index] = True
    return masks


def init_users(spec: NCFSpec, n_users: int, seed: int) -> dict[str, np.ndarray]:
    """Every client's starting user vector, the same whichever worker holds the client."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x05E7]))
    return {
        table: (rng.standard_normal((n_users, spec.dim)) * spec.init_std).astype(np.float32)
        for table in spec.user_tables
    }


def retrieval_queries(
    spec: NCFSpec,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    client_dense: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Query vectors q_u (C, d) with ⟨q_u, item_gmf[i]⟩ = logit(u, i) − out.bias, so an
    inner-product index ranks items exactly as the model does. Only GMF is an inner-product
    model: its logit is (u ⊙ h_i)·w + b = h_i·(u ⊙ w) + b. MLP and NeuMF have none.
    ``client_dense``: each client's own h (C, d) where the strategy personalises it."""
    if spec.kind != "gmf":
        raise ValueError(f"retrieval needs an inner-product model (model.kind=gmf), not {spec.kind!r}")
    weight = global_params["out.weight"][None, :] if client_dense is None else client_dense["out.weight"]
    return (users["user_gmf"] * weight).astype(np.float32)
