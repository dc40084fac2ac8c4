"""RF²'s click models, DLRM (Naumov et al. 2019) and DIN (Zhou et al., KDD 2018), as functional
batched per-client maths: parameters are a ``dict[str, Tensor]`` whose entries carry a leading
client axis ``(C, *shape)``, and :func:`forward` scores every client's own samples with its own
copy, so one backward pass gives each client's gradient (a client's loss only touches its slice).

Features (see ``cluster/data/click_features.py``): the user's categorical codes (gender, age
bucket, occupation, zip prefix), the user's click history, the item id and its genres, and two
dense numbers. Embedding tables have dimension ``dim`` (16); the history shares the item table
(DIN's goods embedding), so an item learns from being clicked and from being scored.

- **DLRM**: a bottom MLP over the dense features (ML-100K has none, so these are the user's
  normalised prior-click count and smoothed prior click rate; its bias alone would still give a
  learned constant vector, i.e. a first-order term for every embedding) with hidden width 16 and
  output ``dim``; mean-pooled history; pairwise dot products of all F = n_cats + 4 vectors
  (F(F−1)/2 of them) next to the bottom output; a top MLP with one hidden layer of 256; a logit.
- **DIN**: the candidate item attends over the history: an MLP (64, 16, Dice) on
  [h, t, h − t, h ⊙ t] gives one unnormalised weight per history item (DIN keeps no softmax);
  pooled = Σ w_j h_j / max(1, n) — a weighted *mean*, so the scale does not grow with history
  length; then [user codes, pooled, item, genres, dense] → MLP with one hidden layer of 256 (Dice)
  → logit. Dice without batch norm (RF²): f(s) = p·s + (1 − p)·α·s with p = σ(s), α per channel —
  batch statistics would make a client's output depend on the rest of its batch.

Shapes (C clients, L samples each, P (sample, clicked item) history pairs, d = ``dim``): see
:class:`ClickBatch`. The history is flat pairs rather than an (L, H) rectangle: early samples have
short histories, and DIN's attention costs per pair.

**Channel slicing** (RF²'s Channel, HeteroFL-style): the hidden layers (``hidden_layers``, in
forward order) may be narrowed to their leading ``ceil(fraction·width)`` channels — all but the
first by default (RF²'s "every layer but the first"; DLRM: the top MLP, DIN: attention layer 2
and the top MLP). :func:`forward` reads every width from the parameters' shapes, so a narrow
client runs exactly the narrow model on its slices (``narrow_params``); ``channel_masks`` gives
the entries it trains, for masked averaging (``cluster.fl.compression.masked_average``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cluster.data.click_features import DENSE_FEATURES, ClickFeatures

KINDS = ("dlrm", "din")


@dataclass(frozen=True)
class ClickSpec:
    """kind: 'dlrm' or 'din'; cats: (name, vocabulary size) of each user categorical feature, in
    the order of ``ClickFeatures.cat_names``; history_len: the most recent clicks a sample sees;
    channel_skip_first: keep the first hidden layer whole under channel slicing."""

    kind: str
    n_items: int
    n_genres: int
    cats: tuple[tuple[str, int], ...]
    n_dense: int = len(DENSE_FEATURES)
    dim: int = 16
    bottom_hidden: tuple[int, ...] = (16,)
    attention_hidden: tuple[int, ...] = (64, 16)
    top_hidden: tuple[int, ...] = (256,)
    history_len: int = 50
    init_std: float = 0.1
    channel_skip_first: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown click model {self.kind!r}; expected one of {KINDS}")

    @classmethod
    def for_features(cls, kind: str, features: ClickFeatures, **overrides) -> ClickSpec:
        cats = tuple(zip(features.cat_names, features.cat_sizes))
        return cls(kind, features.n_items, features.n_genres, cats, **overrides)

    @property
    def n_vectors(self) -> int:
        """DLRM's interacting vectors: user codes, pooled history, item, genres, bottom output."""
        return len(self.cats) + 4

    def hidden_layers(self) -> tuple[tuple[str, int], ...]:
        """(name, width) of every hidden layer, in forward order."""
        first = ("bottom", self.bottom_hidden) if self.kind == "dlrm" else ("att", self.attention_hidden)
        layers = [(f"{first[0]}.{k}", w) for k, w in enumerate(first[1])]
        return tuple(layers + [(f"top.{k}", w) for k, w in enumerate(self.top_hidden)])

    def narrowed_layers(self) -> tuple[str, ...]:
        names = [name for name, _ in self.hidden_layers()]
        return tuple(names[1:] if self.channel_skip_first else names)

    def layout(self) -> dict[str, tuple[tuple[int, ...], tuple[str | None, ...]]]:
        """Every parameter: (shape, the hidden layer each axis runs along, or None)."""
        d = self.dim
        params: dict[str, tuple[tuple[int, ...], tuple[str | None, ...]]] = {}
        for name, size in self.cats:
            params[f"emb.{name}"] = ((size, d), (None, None))
        params["emb.item"] = ((self.n_items, d), (None, None))
        params["emb.genre"] = ((self.n_genres, d), (None, None))
        if self.kind == "dlrm":
            params |= _mlp_layout("bottom", self.n_dense, self.bottom_hidden, d, dice=False)
            n_pairs = self.n_vectors * (self.n_vectors - 1) // 2
            params |= _mlp_layout("top", d + n_pairs, self.top_hidden, 1, dice=False)
        else:
            params |= _mlp_layout("att", 4 * d, self.attention_hidden, 1, dice=True)
            top_in = (len(self.cats) + 3) * d + self.n_dense
            params |= _mlp_layout("top", top_in, self.top_hidden, 1, dice=True)
        return params

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (shape, _) in self.layout().items()}

    def model_bytes(self, fraction: float = 1.0) -> int:
        """float32 bytes of the (narrowed) model a client downloads and uploads."""
        return 4 * sum(int(m.sum()) for m in channel_masks(self, fraction).values())

    # The split Cali3F and Ditto personalise by, named as NCFSpec names it: the dense part N (all
    # but the embedding tables), the shared embedding tables I, and no private user table U (a
    # click model has no user-id feature).
    def dense_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, shape in self.shapes().items() if not is_embedding(name)}

    def dense_bytes(self) -> int:
        return 4 * sum(math.prod(s) for s in self.dense_shapes().values())

    @property
    def item_tables(self) -> tuple[str, ...]:
        return tuple(name for name in self.shapes() if is_embedding(name))

    @property
    def user_tables(self) -> tuple[str, ...]:
        return ()


def _mlp_layout(prefix: str, n_in: int, hidden: tuple[int, ...], n_out: int, dice: bool) -> dict:
    """Layers ``prefix.k``: weight (in, out) and bias (out,) — plus Dice's α (out,) on hidden
    layers when ``dice`` — whose axes run along hidden layer ``prefix.k`` (or the input's)."""
    params = {}
    widths = (*hidden, n_out)
    previous: str | None = None
    for k, width in enumerate(widths):
        name = f"{prefix}.{k}" if k < len(hidden) else None
        params[f"{prefix}.{k}.weight"] = ((n_in if k == 0 else widths[k - 1], width), (previous, name))
        params[f"{prefix}.{k}.bias"] = ((width,), (name,))
        if dice and name is not None:
            params[f"{prefix}.{k}.alpha"] = ((width,), (name,))
        previous = name
    return params


EMBEDDING_PREFIX = "emb."


def is_embedding(name: str) -> bool:
    """Whether parameter ``name`` is an embedding table (sparse rows), not part of the dense N."""
    return name.startswith(EMBEDDING_PREFIX)


def initial_params(spec: ClickSpec, seed: int) -> dict[str, np.ndarray]:
    """w⁰ of a run with ``seed``, as float32 arrays: what the server starts from."""
    generator = torch.Generator().manual_seed(seed)
    return {name: t.numpy().astype(np.float32) for name, t in init_params(spec, generator).items()}


def init_params(spec: ClickSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Embeddings N(0, init_std²); weights and biases torch.nn.Linear's uniform(±1/√fan_in);
    Dice α = 0 (Dice starts as x·σ(x))."""
    params: dict[str, torch.Tensor] = {}
    shapes = spec.shapes()
    for name, shape in shapes.items():
        if name.startswith("emb."):
            params[name] = torch.randn(shape, generator=generator) * spec.init_std
        elif name.endswith(".alpha"):
            params[name] = torch.zeros(shape)
        else:
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][0]
            params[name] = (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)
    return params


@dataclass(frozen=True)
class ClickBatch:
    """C clients' padded samples and their history as flat (sample, item) pairs.

    user_cats: (C, L, n_cats) int64 (per sample, so one "client" may also hold many users' rows,
    as in evaluation under the global model); item: (C, L) int64; genres: (C, L, n_genres)
    float32 (mean over the item's genres); dense: (C, L, n_dense) float32;
    history: (C, P) int64 clicked item of each pair; history_sample: (C, P) int64 the sample
    (0..L-1) the pair belongs to; history_mask: (C, P) float32 1 for a real pair;
    inv_count: (C, L, 1) float32 1 / max(1, the sample's history length).
    """

    user_cats: torch.Tensor
    item: torch.Tensor
    genres: torch.Tensor
    dense: torch.Tensor
    history: torch.Tensor
    history_sample: torch.Tensor
    history_mask: torch.Tensor
    inv_count: torch.Tensor


def forward(spec: ClickSpec, params: dict[str, torch.Tensor], batch: ClickBatch) -> torch.Tensor:
    """Logits (C, L). ``params[name]``: (C, *shape), full or narrowed (widths come from shapes)."""
    users = [_lookup(params[f"emb.{name}"], batch.user_cats[..., k]) for k, (name, _) in enumerate(spec.cats)]
    item = _lookup(params["emb.item"], batch.item)
    history = _lookup(params["emb.item"], batch.history)
    genre = torch.bmm(batch.genres, params["emb.genre"])
    if spec.kind == "dlrm":
        pooled = _pool(history * batch.history_mask.unsqueeze(-1), batch.history_sample, item.shape[1]) * batch.inv_count
        bottom = _mlp(params, "bottom", batch.dense, len(spec.bottom_hidden) + 1, dice=False, last_relu=True)
        vectors = torch.stack([*users, pooled, item, genre, bottom], dim=2)
        # Pairwise dots (i < j, row-major) as products and a last-axis sum rather than one bmm per
        # sample: the number of tiny matrices would follow the batch, and so might the BLAS
        # kernel chosen. Slices, not an index gather, whose backward is a slow accumulating put.
        pairs = torch.cat(
            [(vectors[:, :, i : i + 1] * vectors[:, :, i + 1 :]).sum(dim=-1) for i in range(spec.n_vectors - 1)], dim=-1
        )
        top_in = torch.cat([bottom, pairs], dim=-1)
        return _mlp(params, "top", top_in, len(spec.top_hidden) + 1, dice=False).squeeze(-1)
    pooled = _attention_pool(spec, params, history, item, batch)
    top_in = torch.cat([*users, pooled, item, genre, batch.dense], dim=-1)
    return _mlp(params, "top", top_in, len(spec.top_hidden) + 1, dice=True).squeeze(-1)


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of each client's own table: table (C, V, d), index (C, ...) → (C, ..., d). One
    index_select on the flattened tables; its backward adds each row's gradients in sample order."""
    n_clients, n_rows, dim = table.shape
    offset = (torch.arange(n_clients) * n_rows).view(n_clients, *([1] * (index.dim() - 1)))
    flat = torch.index_select(table.reshape(n_clients * n_rows, dim), 0, (index + offset).reshape(-1))
    return flat.reshape(*index.shape, dim)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (C, N, in) @ weight (C, in, out) + bias (C, out). A one-column output is a product and
    a last-axis sum: bmm with one client would go to a matrix-vector kernel whose rounding
    differs from the batched one, and a client's result must not depend on its companions."""
    if weight.shape[-1] == 1:
        return (x * weight[:, :, 0].unsqueeze(1)).sum(dim=-1, keepdim=True) + bias.unsqueeze(1)
    return torch.bmm(x, weight) + bias.unsqueeze(1)


def _dice(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Dice without batch norm: p·x + (1 − p)·α·x with p = σ(x), x (C, ..., width), alpha
    (C, width) — fused (:class:`_Dice`): on DIN's (C, P, 64) attention activations the
    unfused form's many elementwise passes, forward and backward, cost more than the matmuls."""
    return _Dice.apply(x, alpha)


class _Dice(torch.autograd.Function):
    """y = x·(α + (1 − α)·p); ∂y/∂x = α + (1 − α)·(p + x·p·(1 − p)); ∂y/∂α = x·(1 − p)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        a = alpha.view(alpha.shape[0], *([1] * (x.dim() - 2)), alpha.shape[-1])
        p = torch.sigmoid(x)
        ctx.save_for_backward(x, a, p)
        return x * (a + (1 - a) * p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, a, p = ctx.saved_tensors
        one_minus_p = 1 - p
        x_one_minus_p = x * one_minus_p
        grad_x = grad * (a + (1 - a) * (p + p * x_one_minus_p))
        # One reduction over a (C, N, width) view: a client's α-gradient sums its own N terms.
        grad_alpha = (grad * x_one_minus_p).reshape(x.shape[0], -1, x.shape[-1]).sum(dim=1)
        return grad_x, grad_alpha


def _mlp(params: dict, prefix: str, x: torch.Tensor, n_layers: int, dice: bool, last_relu: bool = False) -> torch.Tensor:
    """Layers ``prefix.0 .. prefix.{n_layers-1}`` on x (C, ..., in): ReLU or Dice between them."""
    lead = x.shape[:-1]
    h = x.reshape(x.shape[0], -1, x.shape[-1])
    for k in range(n_layers):
        h = _linear(h, params[f"{prefix}.{k}.weight"], params[f"{prefix}.{k}.bias"])
        if k < n_layers - 1:
            h = _dice(h, params[f"{prefix}.{k}.alpha"]) if dice else torch.relu(h)
        elif last_relu:
            h = torch.relu(h)
    return h.reshape(*lead, h.shape[-1])


def _pool(values: torch.Tensor, sample: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Per-sample sums (C, L, d) of pair values (C, P, d): one index_add over flattened samples,
    which adds each sample's pairs in pair order."""
    n_clients, _, dim = values.shape
    offset = (torch.arange(n_clients) * n_samples).unsqueeze(1)
    flat = values.new_zeros(n_clients * n_samples, dim).index_add(0, (sample + offset).reshape(-1), values.reshape(-1, dim))
    return flat.view(n_clients, n_samples, dim)


def _attention_pool(spec: ClickSpec, params: dict, history: torch.Tensor, item: torch.Tensor,
                    batch: ClickBatch) -> torch.Tensor:
    """DIN's local activation unit on every (sample, clicked item) pair: a weight from
    [h, t, h − t, h ⊙ t] (h the clicked item, t the candidate), then each sample's weighted
    mean of its history (C, L, d). history: (C, P, d); item: (C, L, d)."""
    target = _lookup(item, batch.history_sample)
    h = torch.cat([history, target, history - target, history * target], dim=-1)
    n_layers = len(spec.attention_hidden) + 1
    for k in range(n_layers):
        h = _linear(h, params[f"att.{k}.weight"], params[f"att.{k}.bias"])
        if k < n_layers - 1:
            h = _dice(h, params[f"att.{k}.alpha"])
    weights = h.squeeze(-1) * batch.history_mask
    return _pool(weights.unsqueeze(-1) * history, batch.history_sample, item.shape[1]) * batch.inv_count


def channel_widths(spec: ClickSpec, fraction: float) -> dict[str, int]:
    """Width of every hidden layer for a client of width ``fraction``: the narrowed layers keep
    ceil(fraction·width) channels (as ``compression.channel_mask``), the others all."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"width fraction must be in (0, 1], got {fraction}")
    narrowed = set(spec.narrowed_layers())
    # Rounded before the ceiling: a float32 width (0.2 → 0.2000000030) times 20 must give 4, not 5.
    return {name: math.ceil(round(fraction * w, 5)) if name in narrowed else w for name, w in spec.hidden_layers()}


def channel_slices(spec: ClickSpec, fraction: float) -> dict[str, tuple[slice, ...]]:
    """For every parameter, the leading slice a client of width ``fraction`` holds and trains."""
    widths = channel_widths(spec, fraction)
    return {
        name: tuple(slice(0, widths[axis] if axis is not None else size) for size, axis in zip(shape, axes))
        for name, (shape, axes) in spec.layout().items()
    }


def channel_masks(spec: ClickSpec, fraction: float) -> dict[str, np.ndarray]:
    """Bool masks (*shape) of the entries inside each parameter's slice."""
    masks, shapes = {}, spec.shapes()
    for name, index in channel_slices(spec, fraction).items():
        mask = np.zeros(shapes[name], dtype=bool)
        mask[index] = True
        masks[name] = mask
    return masks


def narrow_params(spec: ClickSpec, params: dict, fraction: float, client_axis: bool = False) -> dict:
    """The narrow model of width ``fraction``: each parameter's leading slice (views, not copies).
    ``client_axis``: the parameters carry a leading (C,) axis that is kept whole."""
    lead = (slice(None),) if client_axis else ()
    return {name: params[name][lead + index] for name, index in channel_slices(spec, fraction).items()}
