"""RF²'s click models, DLRM (Naumov et al. 2019) and DIN (Zhou et al., KDD 2018), as functional
batched per-client maths: parameters are a ``dict[str, Tensor]`` whose entries carry a leading
client axis ``(C, *shape)``, and ``net.forward`` scores every client's own samples with its own
copy (evaluation, and the autograd reference). Local training runs each client alone through
the same model's forward and backward passes written out in numpy (``kernel.py``).

Features (see ``cluster/fl/families/click/features.py``): the user's categorical codes (gender, age
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
``net.ClickBatch``. The history is flat pairs rather than an (L, H) rectangle: early samples have
short histories, and DIN's attention costs per pair.

**Channel slicing** (RF²'s Channel, HeteroFL-style): the hidden layers (``hidden_layers``, in
forward order) may be narrowed to their leading ``ceil(fraction·width)`` channels — all but the
first by default (RF²'s "every layer but the first"; DLRM: the top MLP, DIN: attention layer 2
and the top MLP). ``net.forward`` reads every width from the parameters' shapes, so a narrow
client runs exactly the narrow model on its slices (``narrow_params``); ``channel_masks`` gives
the entries it trains, for masked averaging (``cluster.fl.compression.masked_average``).
"""

from __future__ import annotations

# The maths that needs torch (initialisation, ``forward``) is in ``net.py``, which imports this module
# and never the other way: the aggregator reads this one but never trains, and a torch import costs
# seconds per process.

import math
from dataclasses import dataclass

import numpy as np

from cluster.fl.families.click.features import DENSE_FEATURES, ClickFeatures

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
    def cat_sizes(self) -> tuple[int, ...]:
        return tuple(size for _, size in self.cats)

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


def _mlp_layout(
    prefix: str, n_in: int, hidden: tuple[int, ...], n_out: int, dice: bool
) -> dict[str, tuple[tuple[int, ...], tuple[str | None, ...]]]:
    """Layers ``prefix.k``: weight (in, out) and bias (out,) — plus Dice's α (out,) on hidden
    layers when ``dice`` — whose axes run along hidden layer ``prefix.k`` (or the input's)."""
    params: dict[str, tuple[tuple[int, ...], tuple[str | None, ...]]] = {}
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
