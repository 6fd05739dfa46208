"""Input validation and normalisation shared by the public ops. Errors name the argument and what was expected."""
import math
import numbers
import operator

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
ENCODINGS = ("unbiased", "integer")
SIGMA_MIN = 1e-3  # heatmap pixels; a Gaussian narrower than a thousandth of a pixel is a mistake of units


def tensor(name, value, ndims, dtypes=FLOAT_DTYPES, last=None):
    """Check that `value` is a tensor with ndim in `ndims`, dtype in `dtypes` and size `last` on the last dim."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dims, got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in {[str(d) for d in dtypes]}, got {value.dtype}")
    if last is not None and value.shape[-1] != last:
        raise ValueError(f"{name} must have size {last} in its last dim, got shape {tuple(value.shape)}")
    return value


def same_device(name, value, ref):
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but the other inputs are on {ref.device}")


def keypoints(value):
    """(B,K,2) or (B,N,K,2) → (B,N,K,2) float32 contiguous; finite float64 coordinates beyond float32's range
    are clamped to ±1e30 (still far off any map) instead of becoming Inf."""
    tensor("keypoints", value, (3, 4), last=2)
    kp = value.detach().unsqueeze(1) if value.dim() == 3 else value.detach()  # targets are not differentiable
    if kp.dtype == torch.float64:
        kp = torch.where(kp.isinf(), kp, kp.clamp(-1e30, 1e30))  # NaN stays NaN
    return kp.to(torch.float32).contiguous()


def visible(value, kp, name="visible", check_finite=True):
    """None or (B,K) / (B,N,K) matching kp (B,N,K,2) → (B,N,K) bool; nonzero means visible. Rejects non-finite
    coordinates of visible joints unless ``check_finite`` is False (the check syncs the host for CUDA tensors)."""
    B, N, K, _ = kp.shape
    if value is None:
        vis = torch.ones((B, N, K), dtype=torch.bool, device=kp.device)
    else:
        tensor(name, value, (2, 3), dtypes=None)
        same_device(name, value, kp)
        vis = value.unsqueeze(1) if value.dim() == 2 else value
        if tuple(vis.shape) != (B, N, K):
            raise ValueError(f"{name} must have shape {(B, K) if N == 1 else (B, N, K)}, got {tuple(value.shape)}")
        vis = vis.contiguous() if vis.dtype == torch.bool else (vis != 0).contiguous()
    if check_finite:
        finite_keypoints(kp, vis)
    return vis


def finite_keypoints(kp, vis):
    """Raise ValueError if a visible joint of kp (B,N,K,2) has a NaN/Inf coordinate; vis (B,N,K) bool."""
    # Fast path: a finite sum of all coordinates means none is NaN/Inf (one reduction instead of a masked scan).
    if not math.isfinite(kp.sum().item()) and not torch.isfinite(kp).all(-1)[vis].all():
        raise ValueError("keypoints contains NaN or Inf for a visible joint (mark it invisible instead)")


def sigma(value, K, device, check_values=True):
    """Finite real scalar, sequence or tensor of K values >= SIGMA_MIN → (K,) float32 on `device`. A tensor's
    values are checked only with ``check_values`` (on a CUDA tensor the check syncs the host; unchecked, a bad σ
    gives NaN targets); numbers and sequences are always checked, on the host."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and (value.dtype == torch.bool or
                                                                         value.is_complex())):
        raise TypeError(f"sigma must be real numbers, got {value!r}")
    if isinstance(value, (int, float)) and SIGMA_MIN <= value < 1e30:  # fast path: valid in float32 for sure
        return torch.full((K,), float(value), dtype=torch.float32, device=device)
    given_tensor = isinstance(value, torch.Tensor)
    try:
        s = value.detach().to(torch.float32) if given_tensor else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"sigma must be a number or a sequence or tensor of numbers, got {value!r}") from exc
    if s.dim() == 0:
        s = s.expand(K)
    if s.dim() != 1 or s.shape[0] != K:
        raise ValueError(f"sigma must be a scalar or have shape ({K},), got shape {tuple(s.shape)}")
    if (check_values or not given_tensor) and not (torch.isfinite(s) & (s >= SIGMA_MIN) & (s < 1e30)).all():
        raise ValueError(f"sigma must be finite and >= {SIGMA_MIN} heatmap pixels, got {value!r}")
    return s.to(device=device, dtype=torch.float32).contiguous()


def maps(name, value, ndims=(4,)):
    """Check that `value` is a float tensor of heatmaps (..., H, W) with H, W > 0."""
    tensor(name, value, ndims)
    if value.shape[-2] == 0 or value.shape[-1] == 0:
        raise ValueError(f"{name} must have H, W > 0, got shape {tuple(value.shape)}")
    return value


def size(value):
    """(H, W) or one int (Python, numpy or a 0-d integer tensor) → (H, W) positive Python ints."""
    try:
        hw = (value, value) if _integer(value) else tuple(value)
    except TypeError:
        hw = ()
    if len(hw) != 2 or not all(_integer(v) and operator.index(v) > 0 for v in hw):
        raise ValueError(f"size must be a positive int or (H, W) of positive ints, got {value!r}")
    return tuple(operator.index(v) for v in hw)


def _integer(value) -> bool:
    """Whether ``value`` is an integer (not a bool): int, numpy integer or 0-d integer tensor."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex() \
            and value.dtype != torch.bool
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def shift(value):
    """A flip shift: a bool (True: 1 heatmap pixel) or a finite real number of heatmap pixels."""
    if isinstance(value, bool) or (isinstance(value, numbers.Real) and math.isfinite(value)):
        return value
    raise ValueError(f"shift must be a bool or a finite number of heatmap pixels, got {value!r}")


def encoding(value):
    if value not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {value!r}")
    return value == "integer"
