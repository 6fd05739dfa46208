"""The Stacked Hourglass network (Newell, Yang, Deng, ECCV 2016)."""
from __future__ import annotations

import numbers
import os
import warnings
from typing import Mapping

import torch
from torch import Tensor, nn

from .. import fused as _fused
from ..checkpoint import non_finite_tensors
from .head import Merge, StackHead
from .hourglass import Hourglass
from .stem import Stem


class StackedHourglass(nn.Module):
    """Stacked Hourglass pose network, faithful to the paper's code.

    Input ``(B, in_channels, H, W)`` (NCHW or channels_last, H and W multiples of ``4 * 2**depth``, i.e. 64 for
    the default depth 4); output ``(B, nstack, njoints, H/4, W/4)`` raw heatmaps of every stack (intermediate
    supervision uses all of them; the last stack is the prediction).

    Submodules: ``stem``, ``hourglasses[i]``, ``heads[i]`` (residual, lin conv+BN+ReLU, heatmap conv) and
    ``merges[i]`` (between stacks). Parameter names are the checkpoint format.

    ``stem_channels``: the width between the stem's last two residuals (``Stem``): 128 as in the paper's code, 256
    for bearpaw's pytorch-pose (and anibali's) checkpoints, which ``from_checkpoint`` reads off the weights.

    ``fused=True`` runs residuals, hourglass merges, heads and merges with the Triton kernels (``hgfast.fused``) on
    CUDA tensors; elsewhere the reference path runs and ``fused_active`` is False (warned once). ``fused=None``
    takes ``hgfast.fused.default_fused()`` (``HGFAST_FUSED``). Both forms share one ``state_dict``.
    """

    def __init__(self, nstack: int = 8, nfeat: int = 256, njoints: int = 16, depth: int = 4, in_channels: int = 3,
                 stem_channels: int = 128, fused: bool | None = None):
        super().__init__()
        sizes = {"nstack": nstack, "nfeat": nfeat, "njoints": njoints, "depth": depth, "in_channels": in_channels,
                 "stem_channels": stem_channels}
        for name, value in sizes.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"StackedHourglass: {name} must be a positive int, got {value!r}")
        nstack, nfeat, njoints, depth, in_channels, stem_channels = map(int, sizes.values())  # numpy's too
        for name, value in (("nfeat", nfeat), ("stem_channels", stem_channels)):
            if value % 2:
                raise ValueError(f"StackedHourglass: {name} must be even, got {value}")
        self.nstack, self.nfeat, self.njoints, self.depth, self.in_channels = nstack, nfeat, njoints, depth, in_channels
        self.stem_channels = stem_channels
        self.stem = Stem(in_channels, nfeat, stem_channels)
        self.hourglasses = nn.ModuleList(Hourglass(depth, nfeat) for _ in range(nstack))
        self.heads = nn.ModuleList(StackHead(nfeat, njoints) for _ in range(nstack))
        self.merges = nn.ModuleList(Merge(nfeat, njoints) for _ in range(nstack - 1))
        self.fused = _fused.default_fused() if fused is None else fused

    @property
    def fused(self) -> bool:
        """Whether the fused path is requested (see ``fused_active`` for whether it runs)."""
        return self._fused

    @fused.setter
    def fused(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"StackedHourglass: fused must be a bool or None, got {enabled!r}")
        self._fused, self._fused_warned = enabled, False
        for m in self.modules():
            if m is not self and hasattr(m, "fused"):
                m.fused = enabled

    @property
    def fused_active(self) -> bool:
        """True when the Triton path can run: fused requested, triton importable, CUDA parameters. A forward may
        still take the reference path (float64 input, submodules in mixed train/eval modes; see
        ``hgfast.fused.wants_fused``)."""
        return self._fused and _fused.runs_on(self.stem.conv.weight.device)

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments; stored in checkpoints so a model can be rebuilt from a file alone."""
        return dict(nstack=self.nstack, nfeat=self.nfeat, njoints=self.njoints, depth=self.depth,
                    in_channels=self.in_channels, stem_channels=self.stem_channels)

    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this (stride-4 stem, then ``depth`` halvings)."""
        return 4 * 2 ** self.depth

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError/TypeError naming ``x`` if it is not a valid image batch for this model."""
        if not isinstance(x, Tensor):
            raise TypeError(f"StackedHourglass: x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"StackedHourglass: x must be (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"StackedHourglass: x must be a floating-point tensor, got {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"StackedHourglass: x must have {self.in_channels} channels (dim 1), "
                             f"got shape {tuple(x.shape)}")
        m = self.input_multiple
        h, w = x.shape[-2:]
        if h == 0 or w == 0 or h % m or w % m:
            raise ValueError(f"StackedHourglass: x height and width must be positive multiples of {m} "
                             f"(stride-4 stem, then {self.depth} halvings), got {h}x{w}")
        if x.shape[0] == 0:
            raise ValueError("StackedHourglass: x is an empty batch (B = 0)")
        weight = self.stem.conv.weight
        if x.device != weight.device:
            raise ValueError(f"StackedHourglass: x is on {x.device} but the model on {weight.device}: move one of "
                             f"them (x.to(device) or model.to(device))")
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"StackedHourglass: x is {x.dtype} but the model's parameters are {weight.dtype}: convert "
                            f"one of them (x.to(dtype) or model.to(dtype)) or run under torch.autocast")

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self._fused and not self._fused_warned and not _fused.runs_on(x.device):
            self._fused_warned = True
            why = f" (hgfast.kernels does not import: {_fused.triton_error()})" if _fused.triton_error() else ""
            warnings.warn(f"StackedHourglass(fused=True): the fused Triton path needs CUDA tensors and triton{why}; "
                          f"running the reference path on {x.device} (fused_active is False)", stacklevel=2)
        if _fused.wants_fused(self, x):
            return _fused.impl().stacked_hourglass_forward(self, x)
        x = self.stem(x)
        heatmaps = []
        for i in range(self.nstack):
            feature, hm = self.heads[i](self.hourglasses[i](x))
            heatmaps.append(hm)
            if i < self.nstack - 1:
                x = self.merges[i](x, feature, hm)
        return torch.stack(heatmaps, 1)

    def save(self, path: str | os.PathLike, skeleton=None, inference: Mapping | None = None) -> None:
        """Write the weights as safetensors (atomically), with ``config`` in the metadata, the training data's
        ``skeleton`` (a ``hgfast.data.Skeleton``: joint names, flip pairs, limbs) and ``inference`` settings (JSON:
        ``input_size``, ``input_norm``, ``box_margin``, ``sigma`` of the training data) if given, which
        ``Predictor``, ``hgfast predict`` and ``hgfast export`` then use; not given, those ``from_checkpoint`` read
        (``checkpoint_skeleton``, ``checkpoint_inference``), so a loaded model saved elsewhere keeps them. A peer's
        ``checkpoint_layout`` is stored too, so its converted weights still decode as the peer's."""
        from ..checkpoint import save_weights
        from ..data.crop import crop_size
        from ..data.skeleton import Skeleton
        from ..predict import INFERENCE_KEYS, check_input_norm, checked_settings

        if skeleton is not None and not isinstance(skeleton, Skeleton):
            raise TypeError(f"save: skeleton must be a hgfast.data.Skeleton, got {type(skeleton).__name__}")
        if skeleton is not None and skeleton.num_joints != self.njoints:
            raise ValueError(f"save: skeleton has {skeleton.num_joints} joints, the model {self.njoints}")
        if inference is not None:  # what from_checkpoint and Predictor will accept
            if not isinstance(inference, Mapping) or not set(inference) <= set(INFERENCE_KEYS):
                raise ValueError(f"save: inference must be a mapping with keys among {sorted(INFERENCE_KEYS)}, "
                                 f"got {inference!r}")
            settings = checked_settings(dict(inference), "save: inference")
            if "input_size" in settings:
                crop_size(settings["input_size"], "save: inference input_size", self.input_multiple)
            if "input_norm" in settings:
                check_input_norm(settings["input_norm"])
        layout = getattr(self, "checkpoint_layout", "hgfast")
        save_weights(self.state_dict(), path, config=self.config,
                     skeleton=getattr(self, "checkpoint_skeleton", None) if skeleton is None else skeleton.to_dict(),
                     inference=getattr(self, "checkpoint_inference", None) if inference is None else dict(inference),
                     checkpoint_layout=None if layout == "hgfast" else layout)

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike | Mapping[str, Tensor], strict: bool = True,
                        **overrides) -> "StackedHourglass":
        """Build a model from hgfast safetensors, or a princeton-vl / bearpaw / anibali checkpoint.

        ``source`` is a file path (``.safetensors``, ``.pth``, ``.pt``, ``.tar``) or a state dict. The layout is
        detected from the key names and remapped; the architecture comes from the overrides (``nstack=...`` etc.),
        then the config stored by ``save``, then the tensor shapes. A wrong or partial checkpoint raises a
        ``ValueError`` listing the missing and unexpected keys (with ``strict=False`` missing keys keep their initial
        values).
        The model's ``checkpoint_layout`` ("hgfast", "princeton-vl" or "bearpaw"; a peer's weights saved by
        ``save`` keep theirs) then tells ``Predictor`` and ``evaluate`` how it decodes
        (``convert.LAYOUT_DECODING``); set it to "hgfast" after training a peer's weights on hgfast's targets.
        ``checkpoint_skeleton`` and ``checkpoint_inference`` hold the skeleton (as a dict) and training-data settings
        stored with the file (None where it has none), which ``save`` writes again.
        """
        from ..checkpoint import load_state_dict, read_metadata
        from .convert import (ARCHITECTURE_KEYS, LAYOUT_DECODING, detect_layout, infer_config, strip_wrappers,
                              to_hgfast_layout)

        from_file = isinstance(source, (str, os.PathLike))
        if not from_file:
            if not isinstance(source, Mapping):
                raise TypeError(f"from_checkpoint: source must be a checkpoint path or a state dict, got "
                                f"{type(source).__name__}")
            bad = [k for k, v in source.items() if not isinstance(v, Tensor) or v.is_complex()]
            if bad:
                raise ValueError(f"from_checkpoint: source must map names to real tensors, got "
                                 f"{type(source[bad[0]]).__name__} {str(source[bad[0]])[:40]!r} for {bad[:5]}")
        state, stored_config = load_state_dict(source) if from_file else (dict(source), {})
        metadata = read_metadata(source) if from_file else {}
        layout = detect_layout(strip_wrappers(state))
        if layout == "hgfast":
            layout = metadata.get("checkpoint_layout", "hgfast")
            if layout not in LAYOUT_DECODING:
                raise ValueError(f"{source}: unknown checkpoint_layout {layout!r} in its metadata (expected one of "
                                 f"{sorted(LAYOUT_DECODING)})")
        state = to_hgfast_layout(state)
        config = {**stored_config, **overrides}
        config.update(infer_config(state, ARCHITECTURE_KEYS - config.keys()))
        model = cls(**config)
        load_into(model, state, strict=strict)
        model.checkpoint_layout = layout
        model.checkpoint_skeleton = model.checkpoint_inference = None
        if from_file:  # what save() writes back
            from ..predict import checkpoint_settings

            skeleton = metadata.get("skeleton")
            names = skeleton.get("names") if isinstance(skeleton, dict) else None
            if isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) == model.njoints:
                model.checkpoint_skeleton = skeleton
            elif skeleton is not None:
                warnings.warn(f"{source}: its stored skeleton is ignored: it needs 'names', {model.njoints} joint "
                              f"names, got {str(names)[:120]}", stacklevel=2)
            model.checkpoint_inference = checkpoint_settings(source) or None
        return model


def load_into(model: nn.Module, state: Mapping[str, Tensor], strict: bool = True) -> None:
    """``model.load_state_dict`` with an error that lists missing, unexpected and mis-shaped keys. BatchNorm
    ``num_batches_tracked`` counters may be missing (checkpoints saved before PyTorch 0.4.1 have none): they start
    at 0, as PyTorch's own loading does."""
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if mismatched or unexpected or (strict and missing):
        def fmt(keys):
            return ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "") or "none"
        raise ValueError("checkpoint does not fit StackedHourglass"
                         f"(nstack={getattr(model, 'nstack', '?')}, nfeat={getattr(model, 'nfeat', '?')}, "
                         f"njoints={getattr(model, 'njoints', '?')}): missing keys [{fmt(missing)}]; "
                         f"unexpected keys [{fmt(unexpected)}]; shape mismatches [{fmt(mismatched)}]")
    broken = non_finite_tensors(state)
    if broken:  # a diverged run's weights: every prediction would be NaN
        raise ValueError(f"checkpoint has NaN or infinite values in {len(broken)} tensor(s), e.g. {broken[:3]}: the "
                         f"run that wrote it had diverged")
    model.load_state_dict(dict(state), strict=False)
