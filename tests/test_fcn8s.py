"""FCN-8s: wiring, output size, parameter count, bilinear upsampling, VGG16 weight loading, fc6 on small maps."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from scarce.nets import fcn8s as fcn_module
from scarce.nets.fcn8s import FCN8s, SameConv2d, bilinear_kernel


pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_net():
    torch.manual_seed(0)
    return FCN8s(19).eval()


def test_parameter_count_for_19_classes(full_net):
    # VGG16 convs 14.71M + fc6 (512*49+1)*4096 + fc7 (4096+1)*4096 + scores and upsamplings: about 134 million.
    n = sum(p.numel() for p in full_net.parameters())
    assert 133_000_000 < n < 136_000_000, n
    assert full_net.fc6[0].weight.shape == (4096, 512, 7, 7)
    assert full_net.fc7[0].weight.shape == (4096, 4096, 1, 1)
    assert [m.p for m in full_net.modules() if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (50, 70), (33, 100), (1, 1)])
def test_full_network_output_size_equals_input_size(full_net, size):
    with torch.no_grad():
        out = full_net(torch.rand(1, 3, *size))
    assert out.shape == (1, 19, *size)


@pytest.mark.parametrize("size", [(32, 64), (45, 61)])
def test_output_size_and_gradients_tiny(size):
    torch.manual_seed(0)
    net = FCN8s(5, width_divisor=16)
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 5, *size)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_fc6_and_fc7_are_on_the_path():
    # The book's first version fed pool5 to the score layer: then fc6 and fc7 would not change the output.
    torch.manual_seed(0)
    net = FCN8s(3, width_divisor=16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.fc6[0].weight.mul_(2.0)
        after_fc6 = net(x)
        net.fc7[0].weight.mul_(2.0)
        after_fc7 = net(x)
    assert not torch.allclose(before, after_fc6)
    assert not torch.allclose(after_fc6, after_fc7)
    feats = net.forward_features(x)
    assert feats["pool5"].shape[-2:] == (2, 2) and feats["fc7"].shape[-2:] == (2, 2)
    assert feats["pool4"].shape[-2:] == (4, 4) and feats["pool3"].shape[-2:] == (8, 8)


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 4), (4, 4), (3, 1), (5, 5), (4, 9), (8, 16)])
def test_same_conv_computes_the_padded_convolution_and_its_gradients(kernel, size):
    # Maps up to half the kernel take the kernel-as-images path, larger ones nn.Conv2d's: both must be the function
    # F.conv2d(x, w, b, padding=k // 2) with its gradients, in double so that only the summation order differs.
    torch.manual_seed(0)
    conv = SameConv2d(5, 6, kernel).double()
    x = torch.randn(3, 5, *size, dtype=torch.double, requires_grad=True)
    ours = conv(x)
    reference = F.conv2d(x, conv.weight, conv.bias, padding=kernel // 2)
    assert ours.shape == reference.shape == (3, 6, *size)
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(reference)
    inputs = (x, conv.weight, conv.bias)
    for got, want in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(reference, inputs, grad)):
        torch.testing.assert_close(got, want)


def test_same_conv_skips_the_products_with_its_padding():
    # On a 2x2 map a 7x7 kernel's taps more than one step from its centre meet only zero padding. Poisoned with NaN,
    # they spoil nn.Conv2d's output (NaN * 0 is NaN) and must leave SameConv2d's untouched.
    torch.manual_seed(0)
    conv = SameConv2d(4, 3, 7)
    x = torch.randn(2, 4, 2, 2)
    clean = conv(x)
    with torch.no_grad():
        ring = torch.ones(7, 7, dtype=torch.bool)
        ring[2:5, 2:5] = False
        conv.weight[..., ring] = float("nan")
    assert F.conv2d(x, conv.weight, conv.bias, padding=3).isnan().all()
    torch.testing.assert_close(conv(x), clean)
    assert conv(torch.randn(2, 4, 5, 5)).isnan().any()  # a map wider than half the kernel: the ordinary convolution


def test_same_conv_keeps_the_input_layout_and_autocast_dtype():
    torch.manual_seed(0)
    conv = SameConv2d(8, 16, 7).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    out = conv(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=3))
    assert conv(x.contiguous()).is_contiguous()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == F.conv2d(x, conv.weight, conv.bias, padding=3).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SameConv2d(8, 16, 4)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fcn8s_trains_as_with_an_ordinary_fc6_dropout_included(layout):
    # A training-mode forward with the same seed: fc6's output in the input's layout makes dropout draw the same
    # mask as after nn.Conv2d, so a fixed seed gives the network it gave before SameConv2d (summation order aside).
    # The anchor is built as benchmarks/segmentation_fc6.py builds its own, so this also checks what it times against.
    spec = importlib.util.spec_from_file_location("_bench_segmentation_fc6", REPO / "benchmarks/segmentation_fc6.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    net = FCN8s(3, width_divisor=16, batch_norm=True).to(memory_format=layout)
    anchor = bench.with_plain_fc6(net)
    assert type(anchor.fc6[0]) is torch.nn.Conv2d and anchor.fc6[0].padding == (3, 3)
    x = torch.rand(2, 3, 128, 128).contiguous(memory_format=layout)
    outputs = []
    for model in (net, anchor):
        torch.manual_seed(1)
        outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)


def test_fc6_is_a_same_conv_with_the_state_dict_keys_of_a_conv():
    net = FCN8s(3, width_divisor=16)
    assert isinstance(net.fc6[0], SameConv2d)
    assert net.fc6[0].padding == (3, 3) and net.fc6[0].kernel_size == (7, 7)
    assert {"fc6.0.weight", "fc6.0.bias"} <= set(net.state_dict())


def test_skips_feed_the_output():
    torch.manual_seed(0)
    net = FCN8s(3, width_divisor=16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.score_pool3.bias.fill_(1.0)
        mid = net(x)
        net.score_pool4.bias.fill_(1.0)
        after = net(x)
    assert not torch.allclose(before, mid) and not torch.allclose(mid, after)


@pytest.mark.parametrize("factor", [2, 8])
def test_transposed_convolutions_start_bilinear(factor):
    up = fcn_module._upsample(4, factor)
    x = torch.rand(1, 4, 6, 6)
    y = up(x)
    assert y.shape == (1, 4, 6 * factor, 6 * factor)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    m = factor  # away from the border, where the transposed convolution sees zero padding
    torch.testing.assert_close(y[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5, rtol=1e-5)
    # A constant map stays constant inside: channels do not mix.
    torch.testing.assert_close(up(torch.ones(1, 4, 5, 5))[..., m:-m, m:-m], torch.ones(1, 4, 5 * m - 2 * m,
                                                                                         5 * m - 2 * m))
    k = bilinear_kernel(3, 4)
    assert k[0, 1].abs().sum() == 0 and k[1, 1].sum() > 0


def test_loads_a_torchvision_vgg16_state_dict(full_net):
    torch.manual_seed(1)
    vgg = torchvision.models.vgg16(weights=None)
    state = vgg.state_dict()
    net = full_net  # the last test to use it: loading replaces its weights
    net.load_backbone(state)
    torch.testing.assert_close(net.features[28].weight, vgg.features[28].weight)
    torch.testing.assert_close(net.fc6[0].weight.flatten(1), vgg.classifier[0].weight)
    torch.testing.assert_close(net.fc7[0].weight.flatten(1), vgg.classifier[3].weight)
    # fc6 as a 7x7 convolution computes what the Linear layer computes on a 7x7 pool5.
    pool5 = torch.rand(1, 512, 7, 7)
    with torch.no_grad():
        conv = F.conv2d(pool5, net.fc6[0].weight, net.fc6[0].bias)
        lin = vgg.classifier[0](pool5.flatten(1))
    torch.testing.assert_close(conv.flatten(), lin.flatten(), atol=1e-4, rtol=1e-4)


def _vgg_like_state(width_divisor: int) -> dict:
    """A state dict with torchvision VGG16's keys at reduced width (what a real file holds, smaller)."""
    net = FCN8s(2, width_divisor=width_divisor)
    state = {f"features.{k}": torch.randn_like(v) for k, v in net.features.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(net.fc6[0].weight.shape).flatten(1)
    state["classifier.0.bias"] = torch.randn(net.fc6[0].bias.shape)
    state["classifier.3.weight"] = torch.randn(net.fc7[0].weight.shape).flatten(1)
    state["classifier.3.bias"] = torch.randn(net.fc7[0].bias.shape)
    state["classifier.6.weight"] = torch.randn(1000, net.fc7[0].weight.shape[0])
    return state


def test_backbone_weights_from_a_local_file(tmp_path):
    state = _vgg_like_state(16)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = FCN8s(4, backbone_weights=str(path), width_divisor=16)
    torch.testing.assert_close(net.features[0].weight, state["features.0.weight"])
    torch.testing.assert_close(net.fc7[0].bias, state["classifier.3.bias"])
    # Fine-tuning starts as the paper: skip scores at zero.
    assert not net.score_pool3.weight.any() and not net.score_pool4.weight.any()


def test_backbone_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a file.*model.init_args.backbone_weights"):
        FCN8s(4, backbone_weights=str(tmp_path / "missing.pth"), width_divisor=16)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        FCN8s(4, backbone_weights=str(bad), width_divisor=16)
    wrong_width = tmp_path / "w8.pth"
    torch.save(_vgg_like_state(8), wrong_width)
    with pytest.raises(ValueError, match="does not fit"):
        FCN8s(4, backbone_weights=str(wrong_width), width_divisor=16)
    with pytest.raises(ValueError, match="width_divisor"):
        FCN8s(4, width_divisor=3)


def test_batch_norm_backbone_is_torchvisions_vgg16_bn_layout():
    torch.manual_seed(0)
    net = FCN8s(5, width_divisor=16, batch_norm=True)
    vgg_bn = torchvision.models.vgg16_bn(weights=None)
    # Key for key the layout of torchvision's vgg16_bn features (at 1/16 width), so its state dicts load.
    assert list(net.features.state_dict()) == list(vgg_bn.features.state_dict())
    x = torch.rand(2, 3, 64, 96)
    feats = net.forward_features(x)
    assert feats["pool3"].shape == (2, 256 // 16, 8, 12)
    assert feats["pool4"].shape == (2, 512 // 16, 4, 6)
    assert feats["pool5"].shape == (2, 512 // 16, 2, 3)
    out = net(x)
    assert out.shape == (2, 5, 64, 96)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_batch_norm_backbone_loads_vgg16_bn_weights_and_refuses_vgg16():
    torch.manual_seed(0)
    bn_net = FCN8s(3, width_divisor=16, batch_norm=True)
    state = {f"features.{k}": torch.randn_like(v) if v.is_floating_point() else v
             for k, v in bn_net.features.state_dict().items()}
    plain = _vgg_like_state(16)
    state.update({k: v for k, v in plain.items() if k.startswith("classifier.")})
    net = FCN8s(3, width_divisor=16, batch_norm=True)
    net.load_backbone(state)
    torch.testing.assert_close(net.features[1].running_var, state["features.1.running_var"])
    torch.testing.assert_close(net.fc6[0].weight.flatten(1), state["classifier.0.weight"])
    with pytest.raises(ValueError, match="vgg16_bn layout"):
        FCN8s(3, width_divisor=16, batch_norm=True).load_backbone(plain)


def test_backbone_weights_names_resolve_to_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() = $TORCH_HOME/hub
    checkpoints = tmp_path / "hub" / "checkpoints"
    plain, bn = checkpoints / "vgg16-397923af.pth", checkpoints / "vgg16_bn-6c64b313.pth"
    with pytest.raises(FileNotFoundError) as missing:
        fcn_module.backbone_weights_path("IMAGENET1K_V1")
    message = str(missing.value)
    assert "\n" not in message and f"{plain} is not there" in message
    assert "Put https://download.pytorch.org/models/vgg16-397923af.pth there" in message
    assert "torchvision.models.vgg16(weights='IMAGENET1K_V1')" in message
    checkpoints.mkdir(parents=True)
    plain.touch()
    bn.touch()
    for name in ("IMAGENET1K_V1", "DEFAULT", "VGG16_Weights.IMAGENET1K_V1"):
        assert fcn_module.backbone_weights_path(name) == plain
    for name in ("IMAGENET1K_V1", "VGG16_BN_Weights.IMAGENET1K_V1"):
        assert fcn_module.backbone_weights_path(name, batch_norm=True) == bn
    with pytest.raises(ValueError, match="are VGG16_Weights but batch_norm is True: use VGG16_BN_Weights"):
        fcn_module.backbone_weights_path("VGG16_Weights.IMAGENET1K_V1", batch_norm=True)
    with pytest.raises(ValueError, match="train only VGG16's features"):
        fcn_module.backbone_weights_path("IMAGENET1K_FEATURES")
    with pytest.raises(ValueError, match=r"unknown VGG16_Weights name; valid values are \['IMAGENET1K_V1'"):
        fcn_module.backbone_weights_path("IMAGENET1K_V2")
    local = tmp_path / "mine.pth"
    local.touch()
    assert fcn_module.backbone_weights_path(str(local)) == local  # a local path stays a local path


def test_imagenet1k_v1_loads_full_size_vgg16_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """A real load at width_divisor 1: random weights of VGG16's shapes, saved under the name torchvision uses."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    vgg = torchvision.models.vgg16(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg.state_dict(), tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    conv, fc7_bias = vgg.features[28].weight.detach().clone(), vgg.classifier[3].bias.detach().clone()
    fc6_row = vgg.classifier[0].weight[17].detach().clone()
    del vgg  # 138M parameters: keep one copy at a time
    net = FCN8s(19, backbone_weights="IMAGENET1K_V1")
    torch.testing.assert_close(net.features[28].weight, conv)
    torch.testing.assert_close(net.fc7[0].bias, fc7_bias)
    torch.testing.assert_close(net.fc6[0].weight[17].flatten(), fc6_row)
    assert not net.score_pool4.weight.any()
