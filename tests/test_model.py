"""Reference StackedHourglass: sizes, shapes, gradients, autocast, channels_last and bad input."""
import numpy as np
import pytest
import torch

from hgfast import Hourglass, Residual, StackedHourglass


@pytest.mark.parametrize("nstack,millions", [(1, 3.43), (2, 6.57), (4, 12.86), (8, 25.43)])
def test_parameter_counts_match_the_paper_architecture(nstack, millions):
    model = StackedHourglass(nstack=nstack, nfeat=256, njoints=16)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_hourglass_has_thirteen_residuals_and_residual_skip_rule():
    assert sum(isinstance(m, Residual) for m in Hourglass(4, 8).modules()) == 13
    assert Residual(8, 8).skip is None
    assert isinstance(Residual(8, 16).skip, torch.nn.Conv2d)


@pytest.mark.parametrize("nstack,size,batch", [(1, (64, 64), 1), (2, (128, 64), 2), (3, (64, 192), 1)])
def test_output_shape(nstack, size, batch):
    model = StackedHourglass(nstack=nstack, nfeat=16, njoints=5).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, *size))
    assert out.shape == (batch, nstack, 5, size[0] // 4, size[1] // 4)
    assert torch.isfinite(out).all()


def test_depth_changes_the_input_multiple():
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=2)
    assert model.input_multiple == 16
    assert model(torch.randn(1, 3, 16, 48)).shape == (1, 1, 2, 4, 12)


def test_stacks_feed_each_other():
    """Changing the first stack's heatmap conv must change the second stack's output (merge is wired)."""
    model = StackedHourglass(nstack=2, nfeat=16, njoints=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.heads[0].heatmap.bias.add_(1.0)
        after = model(x)
    assert not torch.allclose(before[:, 1], after[:, 1])


@pytest.mark.parametrize("train", [False, True])
def test_gradients_reach_every_parameter(train):
    """Every parameter gets a gradient; in training mode the biases of the convs that feed a batch-statistics BN
    (a residual's conv1 and conv2) get one that is zero in exact arithmetic (the BN subtracts the batch mean),
    so only rounding noise, sometimes exactly 0: those are checked to be that small next to their conv weights'
    gradient (rounding gives up to ~1e-3 of it, depending on the CPU and threads; a real gradient, as in eval mode,
    is ~0.2 of it or more)."""
    torch.manual_seed(0)
    model = StackedHourglass(nstack=2, nfeat=16, njoints=4).train(train)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    params = dict(model.named_parameters())
    for name, param in params.items():
        assert param.grad is not None, name
        if train and name.endswith(("conv1.bias", "conv2.bias")):
            weight_grad = params[name.removesuffix("bias") + "weight"].grad
            assert param.grad.abs().max() < 1e-2 * weight_grad.abs().max(), name
        else:
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward(dtype):
    model = StackedHourglass(nstack=2, nfeat=16, njoints=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            out = model(x)
    assert out.dtype == dtype
    # Half-precision convs round at every layer: compare with a tolerance relative to the output scale.
    assert (out.float() - ref).abs().max() <= 0.1 * ref.abs().max()


def test_channels_last_input_matches_contiguous():
    model = StackedHourglass(nstack=2, nfeat=16, njoints=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,match", [
    ((1, 3, 100, 64), "multiples of 64"),
    ((1, 3, 64, 32), "multiples of 64"),
    ((1, 1, 64, 64), "3 channels"),
    ((3, 64, 64), r"\(B, 3, H, W\)"),
    ((0, 3, 64, 64), "empty batch"),
])
def test_bad_input_shapes_raise(shape, match):
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(shape))


def test_integer_input_raises():
    with pytest.raises(TypeError, match="floating-point"):
        StackedHourglass(nstack=1, nfeat=8, njoints=2)(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_input_of_another_dtype_than_the_model_raises(dtype):
    """Was torch's "Input type (double) and bias type (float) should be the same" from inside the stem."""
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1).eval()
    with pytest.raises(TypeError, match=f"x is {dtype} but the model's parameters are torch.float32"):
        model(torch.rand(1, 3, 64, 64, dtype=dtype))
    assert model.to(dtype)(torch.rand(1, 3, 64, 64, dtype=dtype)).dtype == dtype  # matching dtypes run
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts, as for a plain convolution
        assert model.float()(torch.rand(1, 3, 64, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_input_on_another_device_than_the_model_raises():
    """Was torch's "Tensor on device cpu is not on the expected device meta!" (or cuda vs cpu) from the stem."""
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1)
    with pytest.raises(ValueError, match="x is on meta but the model on cpu: move one of them"):
        model(torch.rand(1, 3, 64, 64, device="meta"))


@pytest.mark.parametrize("kwargs,match", [({"nstack": 0}, "nstack"), ({"nfeat": 7}, "nfeat"),
                                          ({"njoints": 2.5}, "njoints")])
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StackedHourglass(**kwargs)


def test_numpy_ints_are_sizes_and_the_config_holds_ints():
    """Were refused as "must be a positive int" (np.int64 is not an int)."""
    import json

    model = StackedHourglass(nstack=np.int64(1), nfeat=np.int32(16), njoints=np.int64(4), depth=np.int64(2))
    assert json.loads(json.dumps(model.config)) == model.config and model.nstack == 1 and type(model.nstack) is int
