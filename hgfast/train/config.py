"""Training configuration: dataclasses, presets, YAML files and ``--set key=value`` overrides.

Resolution order: defaults → ``preset`` → YAML file → ``--set`` overrides. Keys are dotted paths
(``optim.lr``, ``model.nstack``); an unknown key or a value of the wrong type raises ``ConfigError`` naming the
key and the accepted keys / type. The resolved config is written to ``<workdir>/config.yaml``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..data.augment import PRESETS as AUGMENT_PRESETS
from ..data.crop import MAX_CROP_SIDE, checked_margin, crop_size
from ..predict import INPUT_NORMS


MAX_THREADS = 1024  # torch.set_num_threads: more is a typo (and overflows its int past 2**63)


class ConfigError(ValueError):
    """A bad configuration key or value (the message names the key)."""


@dataclass
class ModelConfig:
    nstack: int = 2
    nfeat: int = 256
    depth: int = 4
    fused: bool = False          # StackedHourglass(fused=True) where that exists and a GPU runs it
    stem_channels: int = 128     # width between the stem's last two residuals (256: bearpaw's / anibali's weights)
    init: str = ""               # a fresh run starts from these weights (hgfast.train.pretrained; fine-tuning)


@dataclass
class DataConfig:
    dataset: str = "synthetic"   # "synthetic", "mpii" or "coco" (COCO-format keypoint JSON: hgfast.data.coco)
    input_size: int | list = 256  # crop side S, or [height, width], in pixels; heatmaps are a quarter of it
    sigma: float = 1.0           # target Gaussian std in heatmap pixels
    encoding: str = "unbiased"   # target centre: "unbiased" (sub-pixel) or "integer"
    loss_weight: str = "annotated"  # "annotated": train occluded joints too (Lua); "visible": mask them (bearpaw)
    drop_off_map: bool = False   # weight 0 for joints augmentation pushed off the heatmap (HRNet, mmpose, bearpaw);
                                 # false: trained toward an all-zero map (the Lua trainer)
    augment: str = "bearpaw"     # hgfast.data.augment.PRESETS
    workers: int = 2
    seed: int = 0
    # synthetic figures
    train_length: int = 20000
    val_length: int = 500
    image_size: int = 384        # side of the rendered images (the crop is cut from them)
    # MPII: annot/{train,valid}.h5 and images/ under root unless given one by one; COCO: under root
    # annotations/person_keypoints_{train,val}2017.json and {train,val}2017/, or any COCO-format files
    root: str = ""
    train_annotations: str = ""
    val_annotations: str = ""
    image_dir: str = ""
    val_image_dir: str = ""      # COCO: validation images, if not in image_dir
    one_based: bool = True       # the h5 coordinates are MATLAB's 1-based ones: subtract 1 (hgfast.data.mpii)
    category_id: int = 0         # COCO: the category whose keypoints to use (0: the only one with keypoints)
    flip_pairs: list[list] = field(default_factory=list)  # COCO, h5: [[a, b], ...] swapped by a flip (default: by name)
    box_margin: float = 1.25     # COCO: crop / the box widened or heightened to the input's aspect
    oks_sigmas: list = field(default_factory=list)  # COCO: per-joint OKS sigmas for AP (default: COCO's, 17 joints)
    val_detections: str = ""     # COCO: validate in these detected boxes (COCO results JSON): OKS AP only
    input_norm: str = "none"     # model input after /255: "none", "bearpaw" (- MPII mean), "anibali" (mean/std)


@dataclass
class OptimConfig:
    name: str = "rmsprop"        # "rmsprop" (paper: 2.5e-4, alpha 0.99, eps 1e-8) or "adam"
    lr: float = 2.5e-4
    weight_decay: float = 0.0
    schedule: str = "step"       # "step" (× gamma at milestones), "cosine" or "constant"
    milestones: list = field(default_factory=list)  # steps for the "step" schedule
    gamma: float = 0.1
    warmup_steps: int = 0


def default_thresholds(dataset: str) -> list[float]:
    """The PCK thresholds of an empty ``val_thresholds``: PCKh@0.5, 0.1 for MPII, else 0.2, 0.1, 0.05."""
    return [0.5, 0.1] if dataset == "mpii" else [0.2, 0.1, 0.05]


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    workdir: str = "runs/hgfast"
    steps: int = 20000
    batch_size: int = 16         # per process
    amp: str = "none"            # "none", "bf16" or "fp16"
    channels_last: bool = False
    cuda_graphs: bool = False    # replay the whole training step from a CUDA graph (one CUDA process, amp none/bf16)
    sync_bn: bool = False        # SyncBatchNorm under DDP
    device: str = "auto"         # "auto", "cpu", "cuda", "cuda:1", ...
    seed: int = 0
    threads: int = 0             # torch.set_num_threads (0: leave torch's default)
    log_every: int = 50
    val_every: int = 1000
    val_flip: bool = False
    val_thresholds: list = field(default_factory=list)  # default: [0.5, 0.1] (MPII), [0.2, 0.1, 0.05] (synthetic)
    val_metric: str = "pck"      # best.safetensors by "pck" (mean at the first threshold) or "ap" (COCO OKS AP)
    vis_every: int = 1000        # prediction picture every N steps (0: only at the end)
    ckpt_every: int = 1000

    def thresholds(self) -> list[float]:
        if self.val_thresholds:
            return [float(t) for t in self.val_thresholds]
        return default_thresholds(self.data.dataset)


PRESETS: dict[str, dict] = {
    # The CPU main job: a small model on small synthetic crops; val PCK@0.2 >= 0.7 in minutes on 2 cores.
    # Every training sample is rendered fresh (100k figures, ~19k seen), so no augmentation is needed; sigma 2
    # on 16x16 heatmaps leaves the all-zero plateau much sooner than sigma 1. One torch thread plus one loader
    # worker fills two cores without OpenMP oversubscription (which slows a shared machine several-fold).
    "cpu-small": {"model": {"nstack": 2, "nfeat": 64, "depth": 3},
                  "data": {"input_size": 64, "image_size": 128, "augment": "none", "workers": 1,
                           "train_length": 100000, "val_length": 400, "sigma": 2.0},
                  "optim": {"name": "adam", "lr": 2e-3, "schedule": "cosine", "warmup_steps": 50},
                  "steps": 600, "batch_size": 32, "threads": 1, "log_every": 25, "val_every": 300,
                  "vis_every": 300, "ckpt_every": 300},
    # The paper's recipe on MPII (8 stacks, RMSprop 2.5e-4, batch 6, drop at the plateau), with Lua augmentation.
    "mpii-hg8": {"model": {"nstack": 8, "nfeat": 256},
                 "data": {"dataset": "mpii", "input_size": 256, "augment": "newell", "workers": 6},
                 "optim": {"name": "rmsprop", "lr": 2.5e-4, "schedule": "step", "milestones": [600000]},
                 "steps": 800000, "batch_size": 6, "amp": "bf16", "channels_last": True, "val_every": 10000,
                 "vis_every": 10000, "ckpt_every": 5000},
    # bearpaw's hg_s2_b1 recipe: 2 stacks, RMSprop 2.5e-4, x0.1 at epochs 60 and 90 of 100 (batch 6).
    "mpii-hg2": {"model": {"nstack": 2, "nfeat": 256},
                 "data": {"dataset": "mpii", "input_size": 256, "augment": "bearpaw", "workers": 6},
                 "optim": {"name": "rmsprop", "lr": 2.5e-4, "schedule": "step", "milestones": [222460, 333690]},
                 "steps": 370766, "batch_size": 6, "amp": "bf16", "channels_last": True, "val_every": 10000,
                 "vis_every": 10000, "ckpt_every": 5000},
    # mmpose's COCO hourglass recipe (td-hm_hourglass52_8xb32-210e_coco-256x256: Adam 5e-4, 500 warm-up steps,
    # x0.1 at epochs 170 and 200 of 210, 8 processes x batch 32, sigma 2 at 64x64, its augmentation, off-map joints
    # unweighted, flip test, best by AP). Steps as mmpose's iterations: 586 per epoch of COCO train2017's 149,813
    # people over 8 processes (torchrun --nproc_per_node 8); one process sees an eighth of the images in as many
    # steps. Not mmpose's: 2 stacks of Newell's hourglass (its HG52 is 1 stack of another), unbiased targets, inputs
    # in [0, 1] (no ImageNet mean/std), validation in ground-truth boxes unless data.val_detections names the
    # person detections mmpose validates in (COCO_val2017_detections_AP_H_56_person.json).
    "coco-hg2": {"model": {"nstack": 2, "nfeat": 256},
                 "data": {"dataset": "coco", "input_size": 256, "sigma": 2.0, "augment": "mmpose", "workers": 6,
                          "drop_off_map": True},
                 "optim": {"name": "adam", "lr": 5e-4, "schedule": "step", "milestones": [99620, 117200],
                           "warmup_steps": 500},
                 "steps": 123060, "batch_size": 32, "amp": "bf16", "channels_last": True, "val_every": 5860,
                 "val_flip": True, "val_metric": "ap", "vis_every": 5860, "ckpt_every": 1000},
}

CHOICES = {"data.dataset": ("synthetic", "mpii", "coco"), "data.encoding": ("unbiased", "integer"),
           "data.input_norm": tuple(INPUT_NORMS), "data.augment": tuple(AUGMENT_PRESETS),
           "data.loss_weight": ("annotated", "visible"), "optim.name": ("rmsprop", "adam"),
           "optim.schedule": ("step", "cosine", "constant"), "amp": ("none", "bf16", "fp16"),
           "val_metric": ("pck", "ap")}


# Data keys that only some datasets read: set for another, they would be ignored (refused instead).
DATASET_KEYS = {"root": ("mpii", "coco"), "train_annotations": ("mpii", "coco"), "val_annotations": ("mpii", "coco"),
                "image_dir": ("mpii", "coco"), "val_image_dir": ("coco",), "one_based": ("mpii",),
                "category_id": ("coco",), "flip_pairs": ("mpii", "coco"), "oks_sigmas": ("coco",),
                "val_detections": ("coco",)}


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _merge(obj, updates: dict, prefix: str = "") -> None:
    """Set fields of the dataclass ``obj`` from the nested dict ``updates``, checking keys and types."""
    if not isinstance(updates, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<top>'} must be a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in updates.items():
        path = prefix + str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; keys in {prefix.rstrip('.') or 'the top level'}: "
                              f"{', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, {} if value is None else value, path + ".")  # (a YAML section left empty)
        else:
            setattr(obj, key, _coerce(path, hints[key], value))


def _coerce(path: str, kind, value):
    if isinstance(kind, types.UnionType):
        for member in typing.get_args(kind):
            try:
                return _coerce(path, member, value)
            except ConfigError:
                pass
        names = " or ".join(m.__name__ for m in typing.get_args(kind))
        raise ConfigError(f"config key {path!r} expects {names}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and isinstance(_number(value), int):  # "6e5", as YAML 1.1 reads it
            return _number(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # 007 -> 7, 1.10 -> 1.1, 12:30 -> 750
            raise ConfigError(f"config key {path!r} expects text; YAML read a number, {value!r}, which may not be "
                              f"what was written: quote it")
    elif kind is list or typing.get_origin(kind) is list:  # of numbers; list[list]: also of lists of numbers
        def numbers(v):
            return isinstance(v, (list, tuple)) and all(_number(u) is not None for u in v)
        if kind is not list and isinstance(value, (list, tuple)) and all(numbers(v) for v in value):
            return [[_number(u) for u in v] for v in value]
        if numbers(value):
            return [_number(u) for u in value]
    raise ConfigError(f"config key {path!r} expects {getattr(kind, '__name__', kind)}, got {value!r}")


def _number(value):
    """``value`` if an int or float; for a string that reads as a number (YAML 1.1 reads ``6e5``, with no dot, as a
    string) the number, an int where it is whole (``6e5`` -> 600000); else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return None


def _field_type(dotted: str):
    """The type of config key ``dotted`` (``"optim.lr"``), or None for an unknown key."""
    obj, (*sections, leaf) = Config(), dotted.split(".")
    for section in sections:
        obj = getattr(obj, section, None)
        if not dataclasses.is_dataclass(obj):
            return None
    return typing.get_type_hints(type(obj)).get(leaf) if dataclasses.is_dataclass(obj) else None


def _yaml_load(text: str):
    """``text`` read as YAML (safe), refusing a mapping that gives a key twice (``ConstructorError``)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)  # (merge keys, <<)
                seen = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, typing.Hashable):
                        continue  # (the base class refuses it)
                    if key in seen:
                        raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                                f"found the key {key!r} twice", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=UniqueKeyLoader)


def parse_set(items: list[str]) -> dict:
    """``["optim.lr=1e-3", "model.nstack=4"]`` → nested dict (values parsed as YAML scalars / lists; a text key's
    value is taken as written, ``workdir=007`` stays "007", unless quoted)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = out
        *parents, leaf = key.strip().split(".")
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key.strip()}: {'.'.join(parents[:depth + 1])} was set to a value, "
                                  f"{node!r}, not a section")
        try:
            text = _field_type(key.strip()) is str and raw.strip()[:1] not in ("'", '"')
            node[leaf] = raw.strip() if text or not raw.strip() else _yaml_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: the value {raw!r} is not valid YAML ({exc.problem})") from exc
    return out


def load_yaml(path: str | os.PathLike) -> dict:
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder (a run's work dir? give --workdir {path})")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = _yaml_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text (YAML) file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def resolve(preset: str | None = None, path: str | os.PathLike | dict | None = None, overrides=(), **top) -> Config:
    """Build a validated ``Config`` from defaults, a preset name, a YAML file (or its contents, already read),
    ``--set`` strings and keywords."""
    cfg = Config()
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        _merge(cfg, PRESETS[preset])
    if path is not None:
        _merge(cfg, path if isinstance(path, dict) else load_yaml(path))
    _merge(cfg, parse_set(list(overrides)))
    _merge(cfg, {k: v for k, v in top.items() if v is not None})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check choices and ranges; raise ``ConfigError`` naming the key."""
    flat = {f"{s}.{k}": v for s in ("model", "data", "optim") for k, v in to_dict(getattr(cfg, s)).items()}
    flat.update({k: v for k, v in to_dict(cfg).items() if not isinstance(v, dict)})
    for key, options in CHOICES.items():
        if flat[key] not in options:
            raise ConfigError(f"config key {key!r} must be one of {options}, got {flat[key]!r}")
    positive = ("model.nstack", "model.nfeat", "model.depth", "model.stem_channels", "data.sigma", "data.train_length",
                "data.val_length", "data.image_size", "optim.lr", "steps", "batch_size", "log_every", "val_every",
                "ckpt_every")
    for key in positive:
        if not flat[key] > 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {flat[key]!r}")
    for key in ("data.workers", "threads", "vis_every", "optim.warmup_steps", "optim.weight_decay",
                "data.category_id", "seed", "data.seed"):
        if flat[key] < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {flat[key]!r}")
    for key in ("model.nfeat", "model.stem_channels"):  # (residual bottlenecks are half as wide)
        if flat[key] % 2:
            raise ConfigError(f"config key {key!r} must be even, got {flat[key]!r}")
    for key in ("seed", "data.seed"):
        if flat[key] >= 2**63:
            raise ConfigError(f"config key {key!r} must be below 2**63 (a 64-bit seed), got {flat[key]!r}")
    for key, value in flat.items():
        if any(isinstance(v, float) and not math.isfinite(v) for v in _flatten(value)):
            raise ConfigError(f"config key {key!r} must be finite, got {value!r}")
    try:
        checked_margin(cfg.data.box_margin, "config key 'data.box_margin'")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not cfg.optim.gamma > 0:
        raise ConfigError(f"config key 'optim.gamma' (the step schedule's LR factor) must be > 0, got "
                          f"{cfg.optim.gamma!r}")
    if not str(cfg.workdir).strip():
        raise ConfigError("config key 'workdir' is empty: give the folder the run writes (--workdir)")
    if cfg.threads > MAX_THREADS:
        raise ConfigError(f"config key 'threads' must be at most {MAX_THREADS} (torch's CPU threads), got "
                          f"{cfg.threads!r}")
    for key in ("optim.milestones", "val_thresholds", "data.oks_sigmas"):
        if not all(v > 0 for v in flat[key]):
            raise ConfigError(f"config key {key!r} must hold numbers > 0, got {flat[key]!r}")
    multiple = 4 * 2 ** cfg.model.depth
    try:
        crop_size(cfg.data.input_size, multiple=multiple)
    except ValueError:
        raise ConfigError(f"config key 'data.input_size' must be S or [height, width], positive multiples of "
                          f"{multiple} for model.depth={cfg.model.depth} up to {MAX_CROP_SIDE}, got "
                          f"{cfg.data.input_size!r}") from None
    if cfg.cuda_graphs and cfg.amp == "fp16":
        raise ConfigError("config key 'cuda_graphs' needs amp 'bf16' or 'none' (fp16's GradScaler synchronises the "
                          "host every step, which a CUDA graph cannot capture)")
    if cfg.data.dataset == "mpii" and not (cfg.data.root or (cfg.data.train_annotations and cfg.data.image_dir)):
        raise ConfigError("MPII needs 'data.root' (with annot/{train,valid}.h5 and images/) or "
                          "'data.train_annotations', 'data.val_annotations' and 'data.image_dir'")
    if cfg.data.dataset == "coco" and not (cfg.data.root or (cfg.data.train_annotations and cfg.data.image_dir)):
        raise ConfigError("COCO needs 'data.root' (with annotations/person_keypoints_{train,val}2017.json and "
                          "{train,val}2017/) or 'data.train_annotations', 'data.val_annotations' and "
                          "'data.image_dir' (and 'data.val_image_dir' if the validation images are elsewhere)")
    if cfg.data.val_detections and cfg.val_metric != "ap":
        raise ConfigError("config key 'data.val_detections' validates by OKS AP only (no ground truth per detected "
                          "box): set val_metric=ap")
    if cfg.val_metric == "ap" and cfg.data.dataset != "coco":
        raise ConfigError(f"config key 'val_metric' = 'ap' (COCO's OKS AP) needs COCO-format data (data.dataset="
                          f"coco), got data.dataset={cfg.data.dataset!r}")
    defaults = DataConfig()
    ignored = [key for key, kinds in DATASET_KEYS.items()
               if cfg.data.dataset not in kinds and getattr(cfg.data, key) != getattr(defaults, key)]
    if ignored:
        kinds = " and ".join(f"data.dataset={k}" for k in DATASET_KEYS[ignored[0]])
        raise ConfigError(f"config key 'data.{ignored[0]}' applies to {kinds}, not data.dataset="
                          f"{cfg.data.dataset!r}: it would be ignored (set data.dataset, or leave the key out)")
    if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(j, int) and j >= 0 for j in p)
               for p in cfg.data.flip_pairs):
        raise ConfigError(f"config key 'data.flip_pairs' must be a list of [a, b] joint index pairs, "
                          f"got {cfg.data.flip_pairs!r}")


def _flatten(value) -> list:
    return [u for v in value for u in _flatten(v)] if isinstance(value, list) else [value]


def save_yaml(cfg: Config, path: str | os.PathLike) -> None:
    import yaml

    from ..checkpoint import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
