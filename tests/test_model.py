"""The I3D network: TensorFlow SAME padding, batch norm as released, head, endpoints, API errors."""

from __future__ import annotations

import pytest
import torch

from i3d_lightning.models import ENDPOINTS, InceptionI3d
from i3d_lightning.models.i3d import MaxPool3dSame, Unit3D, tf_same_padding
from i3d_lightning.weights import i3d


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    return InceptionI3d(num_classes=7).eval()


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    ((64, 224, 224), (7, 7, 7), (2, 2, 2), [2, 3, 2, 3, 2, 3]),   # out 32/112: total 5 -> 2 before, 3 after
    ((32, 112, 112), (1, 3, 3), (1, 2, 2), [0, 1, 0, 1, 0, 0]),   # even input, stride 2: all padding after
    ((16, 28, 28), (2, 2, 2), (2, 2, 2), [0, 0, 0, 0, 0, 0]),
    ((9, 7, 7), (2, 2, 2), (2, 2, 2), [0, 1, 0, 1, 0, 1]),
    ((17, 97, 106), (3, 3, 3), (1, 1, 1), [1, 1, 1, 1, 1, 1]),
])
def test_tf_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_max_pool_padding_never_wins_over_negative_values():
    x = -1 - torch.rand(1, 4, 5, 8, 8)  # all values below -1: a zero from padding would be visible
    y = MaxPool3dSame((1, 3, 3), (1, 2, 2))(x)
    assert y.shape == (1, 4, 5, 4, 4)
    assert y.max() < -1
    # The last output row/column sees only the last two real rows/columns plus padding.
    assert torch.equal(y[..., -1, -1], x[..., -2:, -2:].amax(dim=(-2, -1)))


def test_unit_conv_uses_asymmetric_padding():
    unit = Unit3D(1, 1, (2, 2, 2), (2, 2, 2)).eval()
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
        unit.bn.running_var.fill_(1 - 1e-3)  # batch norm (and ReLU, on positive sums) become identity
    x = torch.arange(3 * 3 * 3, dtype=torch.float32).reshape(1, 1, 3, 3, 3)
    with torch.no_grad():
        out = unit(x)
    # SAME with stride 2 on 3 elements: one padding element after, none before; first window = x[:2,:2,:2].
    assert out.shape[-3:] == (2, 2, 2)
    assert out[0, 0, 0, 0, 0] == x[0, 0, :2, :2, :2].sum()
    assert out[0, 0, 1, 1, 1] == x[0, 0, 2, 2, 2]


def test_batch_norm_is_the_releases():
    bn = Unit3D(4, 8).bn
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.001)
    assert not bn.weight.requires_grad and torch.all(bn.weight == 1)
    assert bn.bias.requires_grad


def test_logits_shape_and_endpoints(model):
    x = torch.rand(2, 3, 9, 193, 193) * 2 - 1  # the smallest input; Mixed_5c as for 16 x 224 x 224
    with torch.no_grad():
        out = model.forward_endpoints(x, ["Mixed_5c", "Features", "Logits", "Predictions"])
    assert out["Mixed_5c"].shape == (2, 1024, 2, 7, 7)
    assert out["Features"].shape == (2, 1024)
    assert out["Logits"].shape == (2, 7)
    torch.testing.assert_close(out["Predictions"].sum(1), torch.ones(2))
    # The logits layer is linear, so the logits are the layer applied to the pooled features.
    head = model.logits(out["Features"][:, :, None, None, None]).flatten(1)
    torch.testing.assert_close(head, out["Logits"], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), out["Logits"])
        torch.testing.assert_close(model.features(x), out["Features"])


def test_early_endpoint_stops_and_accepts_small_inputs(model):
    x = torch.rand(1, 3, 4, 32, 32)
    with torch.no_grad():
        out = model.forward_endpoints(x, ["Conv3d_2c_3x3"])
    assert list(out) == ["Conv3d_2c_3x3"]
    assert out["Conv3d_2c_3x3"].shape == (1, 192, 2, 8, 8)


def test_endpoint_names_follow_the_release():
    assert ENDPOINTS[:3] == ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1")
    assert ENDPOINTS[-4:] == ("Mixed_5c", "Features", "Logits", "Predictions")


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 3, 8, 224, 224), "at least 9 frames"),
    ((1, 3, 16, 192, 224), "193x193"),
    ((1, 2, 16, 224, 224), "3 input channels"),
    ((3, 16, 224, 224), r"\[B, C, T, H, W\]"),
])
def test_bad_inputs_get_clear_errors(model, shape, message):
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_unknown_endpoint_lists_valid_ones(model):
    with pytest.raises(ValueError, match="valid: Conv3d_1a_7x7"):
        model.forward_endpoints(torch.zeros(1, 3, 9, 193, 193), ["Mixed_6a"])


def test_larger_inputs_average_logits_over_space(model):
    x = torch.rand(1, 3, 9, 256, 256)
    with torch.no_grad():
        out = model.forward_endpoints(x, ["Mixed_5c", "Logits"])
        assert out["Mixed_5c"].shape[-2:] == (8, 8)
        per_position = model.logits(model.avg_pool(out["Mixed_5c"]))  # [1, 7, 1, 2, 2]
    torch.testing.assert_close(out["Logits"], per_position.mean(dim=(2, 3, 4)))


def test_replace_logits_keeps_backbone():
    model = i3d(num_classes=400)
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("logits")}
    model.replace_logits(51)
    assert model.num_classes == 51 and model.logits.bias.shape == (51,)
    for key, value in model.state_dict().items():
        if not key.startswith("logits"):
            assert torch.equal(value, backbone[key])


def test_builder_without_weights():
    model = i3d(num_classes=101, in_channels=2, dropout=0.3)
    assert model.num_classes == 101 and model.in_channels == 2 and model.dropout.p == 0.3
