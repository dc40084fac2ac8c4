"""RF²'s tier-aware optimizations (Maeng et al. 2022, Table 1) as named presets of
``fl.optimization``. The ratio in a name is the low:mid:high share of the full model or update a
tier keeps, as RF² labels them (e.g. prune-1:4:16 keeps 1/16, 1/4 and all of the entries).

Levels are per tier: the pruned share of update entries (prune), bits per entry (quant, quants;
32 = no quantization), the kept width of the narrowed hidden layers (channel) or the share of its
local samples a client trains on (subsample).

Beyond RF²'s table, ``MITIGATION_PRESETS``: the ``-lo`` presets keep the low tier in the round
where Exclude Lo drops it (a narrower model or fewer local samples for the low tier alone), and
``-rescaled`` prunes without shrinking the pruned tiers' updates.
"""

from __future__ import annotations

# Low, mid and high levels; quant's bit counts are whole numbers, and a float level accepts them.
_LOW_MID_HIGH: dict[str, dict[str, tuple[float, float, float]]] = {
    "prune": {"1:2:4": (0.75, 0.5, 0.0), "1:2:8": (0.875, 0.75, 0.0), "1:4:16": (0.9375, 0.75, 0.0)},
    "quant": {"1:2:4": (8, 16, 32), "1:2:8": (4, 8, 32), "1:4:16": (2, 4, 32)},
    "channel": {"1:2:4": (0.25, 0.5, 1.0), "1:2:8": (0.125, 0.25, 1.0), "1:4:16": (0.0625, 0.25, 1.0)},
}
_TIERS = ("low", "mid", "high")


def _presets() -> dict[str, dict]:
    presets: dict[str, dict] = {
        "none": {"kind": "none"},
        "exclude-lo": {"kind": "exclude", "excluded_tiers": ["low"]},
        "overselect": {"kind": "overselect", "overselect": 0.2},
    }
    for kind, source in (("prune", "prune"), ("quant", "quant"), ("quants", "quant"), ("channel", "channel")):
        for ratio, levels in _LOW_MID_HIGH[source].items():
            presets[f"{kind}-{ratio}"] = {"kind": kind, "levels": dict(zip(_TIERS, levels))}
    return presets


# Mitigations beyond RF²'s table. Exclude Lo's: the low tier trains, narrowed or on a share of its
# samples, mid and high as usual. Pruning's: the kept entries scaled by 1/(1 − rate), so a pruned
# update is unbiased instead of shrunk toward zero (RF² does not rescale).
MITIGATION_PRESETS: dict[str, dict] = {
    "channel-lo-1:16": {"kind": "channel", "levels": {"low": 0.0625}},
    "subsample-lo-1:4": {"kind": "subsample", "levels": {"low": 0.25}},
    "subsample-lo-1:16": {"kind": "subsample", "levels": {"low": 0.0625}},
    "prune-1:4:16-rescaled": {
        "kind": "prune",
        "levels": dict(zip(_TIERS, _LOW_MID_HIGH["prune"]["1:4:16"])),
        "rescale_pruned": True,
    },
}
# The 14 configurations of RF²'s Table 1, in its order; "none" is the reference they are measured against.
RF2_CONFIGURATIONS: tuple[str, ...] = tuple(name for name in _presets() if name != "none")
OPTIMIZATION_PRESETS: dict[str, dict] = {**_presets(), **MITIGATION_PRESETS}
