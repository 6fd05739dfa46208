"""Key remapping from the public PyTorch Stacked Hourglass checkpoints to hgfast's layout.

Layouts understood (detected from the key names):

- ``hgfast``: ``stem.*``, ``hourglasses.{i}.*``, ``heads.{i}.*``, ``merges.{i}.*``.
- ``princeton-vl`` (princeton-vl/pytorch_stacked_hourglass, ``models/posenet.py``): ``pre.{0,1,3,4}``, ``hgs.{i}.0``,
  ``features.{i}.{0,1}``, ``outs.{i}``, ``merge_features.{i}``, ``merge_preds.{i}``; convs wrapped as ``*.conv``.
  Its residuals build a ``skip_layer`` even where cin == cout; those unused weights are dropped.
- ``bearpaw`` (bearpaw/pytorch-pose ``pose/models/hourglass.py``; anibali's checkpoints are the same without the
  ``module.`` prefix): ``conv1``, ``bn1``, ``layer{1,2,3}.0``, ``hg.{i}.hg.{level}.{j}.0``, ``res.{i}.0``,
  ``fc.{i}.{0,1}``, ``score.{i}``, ``fc_.{i}``, ``score_.{i}``. Only one block per location (``num_blocks=1``,
  the layout of the released hg1/hg2/hg8 weights) is supported. Its stem is wider than the paper's: ``layer2`` is
  built after ``layer1`` set the width to 128, so it is Res(128, 256) with a skip conv and ``layer3`` Res(256, f)
  (``stem_channels=256``, read off the weights).

Wrapper prefixes (``module.`` from DataParallel, ``model.`` from princeton-vl's trainer, ``_orig_mod.`` from a
``torch.compile``d model) are stripped.
"""
from __future__ import annotations

import re
from typing import Mapping

from torch import Tensor

_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")

# How a model of each layout decodes (``hgfast.predict``): the peers trained on targets at truncated coordinates
# (``half_pixel``) and flip-test without a shift. bearpaw's and anibali's checkpoints share one layout but not their
# input normalisation ("bearpaw" / "anibali"), so that one has no default (None).
LAYOUT_DECODING = {
    "hgfast": {"half_pixel": False, "flip_shift": True, "input_norm": "none"},
    "princeton-vl": {"half_pixel": True, "flip_shift": False, "input_norm": "none"},
    "bearpaw": {"half_pixel": True, "flip_shift": False, "input_norm": None},
}


def strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``module.`` / ``model.`` / ``_orig_mod.`` prefixes shared by every key (repeatedly)."""
    state = dict(state)
    while state:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(state: Mapping[str, Tensor]) -> str:
    """Return ``"hgfast"``, ``"princeton-vl"`` or ``"bearpaw"``; raise ValueError for anything else."""
    keys = set(state)
    if any(k.startswith("stem.") for k in keys):
        return "hgfast"
    if any(k.startswith("pre.0.") for k in keys) and any(k.startswith("hgs.") for k in keys):
        return "princeton-vl"
    if "conv1.weight" in keys and any(k.startswith("hg.") for k in keys):
        return "bearpaw"
    sample = ", ".join(sorted(keys)[:8])
    raise ValueError(f"unrecognised checkpoint layout (expected hgfast, princeton-vl or bearpaw keys); "
                     f"first keys: [{sample}]")


def to_hgfast_layout(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remap a state dict of any supported layout to hgfast's parameter names."""
    state = strip_wrappers(state)
    layout = detect_layout(state)
    if layout == "hgfast":
        return state
    if layout == "princeton-vl":
        return _from_princeton_vl(state)
    return _from_bearpaw(state)


def _rename(state: Mapping[str, Tensor], rules: list[tuple[str, str]]) -> dict[str, Tensor]:
    """Apply the first matching regex rule to each key; keys that match no rule are kept as they are."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            new, n = pattern.subn(repl, key, count=1)
            if n:
                key = new
                break
        out[key] = value
    return out


def _from_princeton_vl(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Drop the skip convs princeton-vl builds but never uses (square weight: cin == cout).
    unused = {k[: -len("skip_layer.conv.weight")] for k, v in state.items()
              if k.endswith("skip_layer.conv.weight") and v.shape[0] == v.shape[1]}
    state = {k: v for k, v in state.items()
             if not any(k.startswith(p + "skip_layer.") for p in unused)}
    # Residual internals first (prefix-independent), then the module prefixes.
    state = _rename(state, [(r"\.(conv[123])\.conv\.", r".\1."), (r"\.skip_layer\.conv\.", ".skip.")])
    return _rename(state, [
        (r"^pre\.0\.conv\.", "stem.conv."),
        (r"^pre\.0\.bn\.", "stem.bn."),
        (r"^pre\.1\.", "stem.res1."),
        (r"^pre\.3\.", "stem.res2."),
        (r"^pre\.4\.", "stem.res3."),
        (r"^hgs\.(\d+)\.0\.", r"hourglasses.\1."),
        (r"^features\.(\d+)\.0\.", r"heads.\1.res."),
        (r"^features\.(\d+)\.1\.conv\.", r"heads.\1.lin_conv."),
        (r"^features\.(\d+)\.1\.bn\.", r"heads.\1.lin_bn."),
        (r"^outs\.(\d+)\.conv\.", r"heads.\1.heatmap."),
        (r"^merge_features\.(\d+)\.conv\.conv\.", r"merges.\1.feature."),
        (r"^merge_preds\.(\d+)\.conv\.conv\.", r"merges.\1.heatmap."),
    ])


_BEARPAW_BRANCH = {"0": "up1", "1": "low1", "2": "low3", "3": "low2"}


def _from_bearpaw(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    extra_blocks = sorted({k for k in state if re.match(r"^(hg\.\d+\.hg\.\d+\.\d+|res\.\d+|layer\d)\.[1-9]", k)})
    if extra_blocks:
        raise ValueError("bearpaw checkpoint with more than one block per location (num_blocks > 1) is not "
                         f"supported; e.g. {extra_blocks[0]}")
    levels = [int(m.group(1)) for k in state if (m := re.match(r"^hg\.\d+\.hg\.(\d+)\.", k))]
    depth = max(levels) + 1

    def hourglass_key(match: re.Match) -> str:
        stack, level, branch = match.group(1), int(match.group(2)), match.group(3)
        # bearpaw's hg[level] is the hourglass of depth level + 1; hgfast nests the smaller ones as low2.
        return f"hourglasses.{stack}." + "low2." * (depth - 1 - level) + _BEARPAW_BRANCH[branch] + "."

    state = _rename(state, [(r"\.downsample\.0\.", ".skip.")])
    state = {re.sub(r"^hg\.(\d+)\.hg\.(\d+)\.(\d)\.0\.", hourglass_key, k): v for k, v in state.items()}
    return _rename(state, [
        (r"^conv1\.", "stem.conv."),
        (r"^bn1\.", "stem.bn."),
        (r"^layer1\.0\.", "stem.res1."),
        (r"^layer2\.0\.", "stem.res2."),
        (r"^layer3\.0\.", "stem.res3."),
        (r"^res\.(\d+)\.0\.", r"heads.\1.res."),
        (r"^fc\.(\d+)\.0\.", r"heads.\1.lin_conv."),
        (r"^fc\.(\d+)\.1\.", r"heads.\1.lin_bn."),
        (r"^score\.(\d+)\.", r"heads.\1.heatmap."),
        (r"^fc_\.(\d+)\.", r"merges.\1.feature."),
        (r"^score_\.(\d+)\.", r"merges.\1.heatmap."),
    ])


ARCHITECTURE_KEYS = frozenset({"nstack", "nfeat", "njoints", "depth", "in_channels", "stem_channels"})


class _Misshapen(ValueError):
    """A tensor of the wrong rank where the architecture is read off."""


def _size(state: Mapping[str, Tensor], key: str, dim: int) -> int:
    """``state[key].shape[dim]``; a ``_Misshapen`` error naming the key where the tensor has too few dims."""
    shape = tuple(state[key].shape)
    if len(shape) <= dim:
        raise _Misshapen(f"{key} has shape {shape}, expected a conv weight (4 dims)")
    return shape[dim]


_INFER = {
    "nstack": lambda s: 1 + max(int(m.group(1)) for k in s if (m := re.match(r"^hourglasses\.(\d+)\.", k))),
    "nfeat": lambda s: _size(s, "stem.res3.conv3.weight", 0),
    "njoints": lambda s: _size(s, "heads.0.heatmap.weight", 0),
    "depth": lambda s: 1 + max(k.count("low2.") for k in s if k.startswith("hourglasses.0.") and "up1." in k),
    "in_channels": lambda s: _size(s, "stem.conv.weight", 1),
    # the paper's 128 where a partial checkpoint lacks the stem (files saved before the key existed are complete)
    "stem_channels": lambda s: _size(s, "stem.res2.conv3.weight", 0) if "stem.res2.conv3.weight" in s else 128,
}


def infer_config(state: Mapping[str, Tensor], keys=ARCHITECTURE_KEYS) -> dict[str, int]:
    """The architecture ``keys`` (default all: nstack, nfeat, njoints, depth, in_channels, stem_channels) read off
    an hgfast-layout state dict."""
    try:
        return {key: _INFER[key](state) for key in sorted(keys)}
    except _Misshapen as exc:
        raise ValueError(f"cannot infer the architecture from the checkpoint: {exc}") from None
    except (KeyError, ValueError) as exc:
        raise ValueError(f"cannot infer the architecture from the checkpoint: missing {exc}; "
                         f"pass all of {', '.join(sorted(ARCHITECTURE_KEYS))} explicitly") from exc
