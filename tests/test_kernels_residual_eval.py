"""The one-kernel inference residual (``kernels.residual_eval``) against float64 and the three-kernel path, and
``hgfast.fused.fastest``, which picks between them.

Under the interpreter a program's tile is 16 pixels (``eval_tile``) and there are at most 3 programs, so the shapes
below cover tiles cut by the image border, several images per tile with the batch ending inside a tile, and
programs looping over several tiles. The float64 reference rounds to the I/O dtype where the kernels do (the
BN1-ReLU output and both stored activations); tolerances relative to max |ref|: fp32 1e-5, fp16 4e-3, bf16 3e-2.
"""
import contextlib
import sys

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.triton
pytest.importorskip("triton")  # only a missing triton skips; a broken hgfast.kernels fails
import hgfast.kernels as kernels  # noqa: E402

from hgfast.fused import fastest as fastest_module  # noqa: E402
from hgfast.fused.fastest import fastest  # noqa: E402
from hgfast.kernels.conv import pack_weight  # noqa: E402

RTOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
residual_eval_module = sys.modules["hgfast.kernels.residual_eval"]


def make_inputs(n, h, w, c, m, dtype, low=True, bias=True):
    vec = lambda k: torch.rand(k) + 0.5  # noqa: E731
    args = dict(x=torch.randn(n, h, w, c).to(dtype), s1=vec(c), t1=torch.randn(c), w1=torch.randn(m, c, 1, 1),
                b1=torch.randn(m) if bias else None, s2=vec(m), t2=torch.randn(m) * 0.5,
                w2=torch.randn(m, m, 3, 3) / 3, b2=torch.randn(m) if bias else None, s3=vec(m),
                t3=torch.randn(m) * 0.5, w3=torch.randn(c, m, 1, 1), b3=torch.randn(c) if bias else None,
                low=torch.randn(n, h // 2, w // 2, c).to(dtype) if low else None)
    return args


def run_single(a, tile_rows=None):
    return kernels.residual_eval(a["x"], a["s1"], a["t1"], a["w1"], a["b1"], a["s2"], a["t2"],
                                 pack_weight(a["w2"], a["x"].dtype), a["b2"], a["s3"], a["t3"], a["w3"], a["b3"],
                                 a["low"], tile_rows)


def run_three(a):
    mid = kernels.conv2d_fwd(a["x"], a["w1"], a["b1"], a["s1"], a["t1"], a["s2"], a["t2"])[0]
    mid = kernels.conv2d_fwd(mid, a["w2"], a["b2"], epi_scale=a["s3"], epi_shift=a["t3"])[0]
    return kernels.conv2d_fwd(mid, a["w3"], a["b3"], residual=a["x"], low=a["low"])[0]


def reference(a):
    """float64, NHWC out; rounded to the I/O dtype where the kernels round."""
    dt = a["x"].dtype
    d = lambda t: None if t is None else t.double()  # noqa: E731
    ch = lambda v: v.double()[:, None, None]  # noqa: E731
    weight = lambda t: t.to(dt).double()  # noqa: E731
    x = a["x"].permute(0, 3, 1, 2).double()
    u = F.relu(x * ch(a["s1"]) + ch(a["t1"])).to(dt).double()
    mid = F.relu((F.conv2d(u, weight(a["w1"]), d(a["b1"]))) * ch(a["s2"]) + ch(a["t2"])).to(dt).double()
    mid = F.relu(F.conv2d(mid, weight(a["w2"]), d(a["b2"]), padding=1) * ch(a["s3"]) + ch(a["t3"])).to(dt).double()
    y = F.conv2d(mid, weight(a["w3"]), d(a["b3"])) + x
    if a["low"] is not None:
        y = y + F.interpolate(a["low"].permute(0, 3, 1, 2).double(), scale_factor=2.0, mode="nearest")
    return y.permute(0, 2, 3, 1)


def rel_err(actual, ref):
    return (actual.double() - ref.double()).abs().max().item() / ref.double().abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,h,w,c,m,low,bias", [
    (1, 6, 10, 6, 3, True, True),    # 2 x 3 tiles cut by the border, 3 programs looping
    (3, 2, 2, 8, 4, True, False),    # 4 images per tile, the batch of 3 ends inside it
    (2, 5, 7, 20, 17, False, True),  # odd sizes, channels over one 16-wide block
])
def test_residual_eval_matches_float64(dtype, n, h, w, c, m, low, bias):
    if low and (h % 2 or w % 2):
        pytest.skip("low needs even H, W")
    a = make_inputs(n, h, w, c, m, dtype, low, bias)
    y = run_single(a)
    assert y.shape == a["x"].shape and y.dtype == dtype and y.is_contiguous()
    assert rel_err(y, reference(a)) <= RTOL[dtype]


def test_residual_eval_empty_batch():
    a = make_inputs(0, 4, 6, 6, 3, torch.float32)
    assert run_single(a).shape == (0, 4, 6, 6)


def test_residual_eval_with_64_row_tiles():
    """``tile_rows=64`` (the ``single-64`` candidate): here 2 images x 8 x 4 pixels per tile."""
    a = make_inputs(3, 6, 10, 6, 3, torch.float32)
    assert residual_eval_module.eval_tile(3, 6, 10, 64) == (2, 8, 4)
    assert rel_err(run_single(a, 64), reference(a)) <= 1e-5
    with pytest.raises(ValueError, match="tile_rows"):
        run_single(a, 32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_eval_matches_the_three_kernel_path(dtype):
    """Same roundings, same K blocking: one kernel or three give the same values up to fp32 summation order."""
    a = make_inputs(2, 6, 10, 8, 4, dtype)
    assert rel_err(run_single(a), run_three(a)) <= (1e-6 if dtype == torch.float32 else 1e-2)


def test_residual_eval_padding_after_bn2_relu():
    """A BN2 shift with relu(shift) > 0 must not leak into the 3x3's zero padding at the image border."""
    a = make_inputs(1, 4, 4, 4, 2, torch.float32, low=False, bias=False)
    a["t2"] = torch.full((2,), 3.0)
    assert rel_err(run_single(a), reference(a)) <= 1e-5


@pytest.mark.parametrize("change,match", [
    (dict(w2=None), "w2_packed"),
    (dict(w3=torch.randn(5, 3, 1, 1)), "w3"),
    (dict(w1=torch.randn(3, 6, 3, 3)), "w1"),
    (dict(s2=None), "s2"),
    (dict(t1=torch.randn(7)), "t1"),
    (dict(low=torch.randn(1, 3, 3, 6)), "low"),
])
def test_residual_eval_rejects_bad_arguments(change, match):
    a = make_inputs(1, 4, 6, 6, 3, torch.float32)
    packed = pack_weight(a["w2"], torch.float32)
    if "w2" in change:
        packed = packed.to(torch.float16)
        change = {}
    a.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        kernels.residual_eval(a["x"], a["s1"], a["t1"], a["w1"], a["b1"], a["s2"], a["t2"], packed, a["b2"],
                              a["s3"], a["t3"], a["w3"], a["b3"], a["low"])


def test_eval_tile_covers_a_power_of_two_of_rows():
    for n, h, w in ((1, 6, 10), (3, 2, 2), (8, 64, 64), (32, 4, 4), (1, 1, 1)):
        ib, th, tw = residual_eval_module.eval_tile(n, h, w)
        rows = ib * th * tw
        assert rows in (16, 64, 128) and rows & (rows - 1) == 0
        assert th <= max(h, 1) * 2 and tw <= max(w, 1) * 2  # a tile never more than doubles a map side


def test_fastest_pins_and_defaults(monkeypatch):
    calls = []
    candidates = {"one": lambda: calls.append("one"), "two": lambda: calls.append("two")}
    fastest_module.forget()
    fastest("TEST_OP", (1,), candidates, torch.device("cpu"))()
    assert calls == ["one"] and fastest_module.choices() == {}  # no GPU to time on: the first, not remembered
    monkeypatch.setenv("HGFAST_TEST_OP", "two")
    fastest("TEST_OP", (1,), candidates, torch.device("cpu"))()
    assert calls == ["one", "two"]
    monkeypatch.setenv("HGFAST_TEST_OP", "three")
    with pytest.raises(ValueError, match="HGFAST_TEST_OP must be auto or one of one, two"):
        fastest("TEST_OP", (1,), candidates, torch.device("cpu"))


def test_fastest_times_each_candidate_once_per_key(monkeypatch):
    timed = []

    def fake_median_ms(fn):  # no CUDA here: the candidates' "times" are given
        timed.append(fn)
        return {"one": 2.0, "two": 1.0}[fn()]

    monkeypatch.setattr(fastest_module, "cuda_median_ms", fake_median_ms)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    fastest_module.forget()
    candidates = {"one": lambda: "one", "two": lambda: "two"}
    cuda = torch.device("cuda", 0)
    assert fastest("TEST_OP", ("a",), candidates, cuda)() == "two"
    assert fastest("TEST_OP", ("a",), candidates, cuda)() == "two"
    assert len(timed) == 2  # timed once for the key
    assert fastest_module.choices() == {("TEST_OP", ("a",)): "two"}
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert fastest("TEST_OP", ("b",), candidates, cuda)() == "one"  # capturing: nothing can be timed
    assert len(timed) == 2
    fastest_module.forget()


def test_fastest_leaves_out_a_candidate_that_fails(monkeypatch):
    """A candidate this GPU cannot run (out of shared memory, say) is skipped with a warning; all failing raises."""
    def fake_median_ms(fn):
        return {"one": 2.0, "two": 1.0}[fn()]

    def no_resources():
        raise RuntimeError("out of resources: shared memory")

    monkeypatch.setattr(fastest_module, "cuda_median_ms", fake_median_ms)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    fastest_module.forget()
    cuda = torch.device("cuda", 0)
    with pytest.warns(UserWarning, match=r"left out two \(RuntimeError: out of resources"):
        assert fastest("TEST_OP", ("a",), {"one": lambda: "one", "two": no_resources}, cuda)() == "one"
    with pytest.raises(RuntimeError, match="out of resources"):
        fastest("TEST_OP", ("b",), {"two": no_resources}, cuda)
    fastest_module.forget()


@pytest.mark.gpu
@pytest.mark.parametrize("n,h,w", [(4, 16, 16), (5, 64, 64), (3, 50, 70)])
def test_residual_eval_on_the_gpu(n, h, w, monkeypatch):
    """Compiled, with the GPU's tiles (64 rows and 4 warps for small maps; 128 rows, 8 x 16 pixels and 8 warps
    from 132 tiles up), and ``fastest`` timing the implementations on the first call of a shape."""
    from hgfast.fused import ops

    monkeypatch.setenv("HGFAST_EVAL_RESIDUAL", "auto")
    fastest_module.forget()
    a = {k: None if v is None else v.cuda() for k, v in make_inputs(n, h, w, 32, 16, torch.bfloat16).items()}
    ref = reference(a)
    assert rel_err(run_single(a), ref) <= RTOL[torch.bfloat16]
    w2p = pack_weight(a["w2"], torch.bfloat16)
    y = ops.residual_eval(a["x"], a["w1"], a["b1"], a["s1"], a["t1"], a["s2"], a["t2"], a["w2"], w2p, a["b2"],
                          a["s3"], a["t3"], a["w3"], a["b3"], a["low"])
    (op, _), name = next(iter(fastest_module.choices().items()))
    assert op == "EVAL_RESIDUAL" and name in ("single", "single-64", "three")
    assert rel_err(y, ref) <= RTOL[torch.bfloat16]
    fastest_module.forget()


def test_fp32_without_tf32_halves_the_widest_bottleneck(monkeypatch):
    """fp32 GEMMs in IEEE precision stage conv3's fp32 operand through shared memory on their own (sm_90: CMP 512
    needs 384 KB): on a GPU only CMP <= 256 runs as one kernel there; TF32 and 16-bit keep 512."""
    monkeypatch.setattr(residual_eval_module, "interpreting", lambda: False)
    for tf32, widest in ((False, 256), (True, 512)):
        monkeypatch.setattr(residual_eval_module, "dot_precision", lambda dtype: "tf32" if tf32 else "ieee")
        assert residual_eval_module.max_cmp(torch.float32) == widest
        assert kernels.residual_eval_fits(widest, torch.float32) and not kernels.residual_eval_fits(widest + 1,
                                                                                                    torch.float32)
    for dtype in (torch.bfloat16, torch.float16):
        assert kernels.residual_eval_fits(512, dtype)


def test_too_wide_a_bottleneck_is_refused_and_runs_as_three_kernels(monkeypatch):
    """Past ``MAX_CMP`` the one kernel would not fit a GPU block's shared memory (sm_90: CMP 1024 needs 256 KB
    in one stage): the launcher refuses it by name, the fused residual runs the three-kernel form, even pinned."""
    from hgfast.fused import ops as fused_ops

    assert kernels.residual_eval_fits(512, torch.bfloat16) and not kernels.residual_eval_fits(513, torch.bfloat16)
    a = make_inputs(1, 4, 6, 8, 8, torch.float32)
    monkeypatch.setattr(residual_eval_module, "MAX_CMP", 16)
    assert kernels.residual_eval_fits(16, torch.float32) and not kernels.residual_eval_fits(17, torch.float32)
    a.update(w1=torch.randn(17, 8, 1, 1), w2=torch.randn(17, 17, 3, 3) / 6, w3=torch.randn(8, 17, 1, 1), b1=None,
             b2=None, s2=torch.rand(17) + 0.5, t2=torch.randn(17), s3=torch.rand(17) + 0.5, t3=torch.randn(17))
    with pytest.raises(ValueError, match="bottleneck of 17 channels is wider than the one-kernel residual's 16"):
        run_single(a)
    monkeypatch.setenv("HGFAST_EVAL_RESIDUAL", "single")
    y = fused_ops.residual_eval(a["x"], a["w1"], None, a["s1"], a["t1"], a["s2"], a["t2"], a["w2"],
                                pack_weight(a["w2"], torch.float32), None, a["s3"], a["t3"], a["w3"], a["b3"],
                                a["low"])
    assert rel_err(y, reference(a)) <= RTOL[torch.float32]
