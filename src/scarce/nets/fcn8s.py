"""FCN-8s (Long, Shelhamer & Darrell, 2015) on a VGG16 backbone.

The head is wired as in the paper: pool5 -> fc6 (7x7 conv, 4096) -> fc7 (1x1 conv, 4096) -> score, then
two x2 upsamplings fused with the pool4 and pool3 scores and a final x8 upsampling. (The book's first
version fed pool5 straight to the score layer and used 4086 filters; neither is copied here.) fc6 is a
:class:`SameConv2d`: on the small pool5 maps of small inputs it skips the products with its zero padding.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights
from torchvision.models.vgg import cfgs as _VGG_CFGS
from torchvision.models.vgg import make_layers

__all__ = ["FCN8s", "SameConv2d", "backbone_weights_path", "bilinear_kernel"]

# ImageNet statistics: the backbone sees the same input distribution as torchvision's VGG16 weights.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_STRIDE = 32
_FC_WIDTH = 4096


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ``ConvTranspose2d(channels, channels, kernel_size, stride=kernel_size // 2)``
    upsample each channel bilinearly. Shape ``(channels, channels, k, k)``, zero off the diagonal."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt_1d = 1 - (og - center).abs() / factor
    filt = filt_1d[:, None] * filt_1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


# torchvision's VGG16 weights enums by layout. A member name (IMAGENET1K_V1, DEFAULT) or "ENUM.MEMBER" names the file
# torchvision would download into the torch hub cache; scarce reads it from there and never downloads.
_WEIGHTS_ENUMS = {False: VGG16_Weights, True: VGG16_BN_Weights}
# Weights whose classifier (hence fc6 / fc7) is not trained: unusable for FCN-8s.
_FEATURES_ONLY = {"IMAGENET1K_FEATURES"}


def backbone_weights_path(spec: str | Path, batch_norm: bool = False) -> Path:
    """The file ``backbone_weights`` names: a torchvision weights name -> the torch hub cache file torchvision would
    download it to (``torch.hub.get_dir()/checkpoints/<file name of the enum's url>``); else the local path.

    Names: ``IMAGENET1K_V1`` / ``DEFAULT`` (``VGG16_Weights``, or ``VGG16_BN_Weights`` with ``batch_norm``), or the
    full ``VGG16_Weights.IMAGENET1K_V1`` / ``VGG16_BN_Weights.IMAGENET1K_V1``.

    Raises:
        FileNotFoundError: the file is absent; for a weights name, the message says where to put which file.
        ValueError: weights of the other layout, or ones without trained fc6 / fc7.
    """
    text = str(spec)
    enum = _WEIGHTS_ENUMS[batch_norm]
    prefix, _, member = text.rpartition(".")
    named_enum = next((e for e in _WEIGHTS_ENUMS.values() if e.__name__ == prefix), None)
    is_name = named_enum is not None or (not prefix and re.fullmatch(r"[A-Z][A-Z0-9_]*", text) is not None)
    if not is_name:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"FCN8s: backbone_weights {str(path)!r} is not a file (`model.init_args."
                                    f"backbone_weights` in a config). Give IMAGENET1K_V1 (torchvision's weights, read "
                                    "from the torch hub cache), the path of a local torchvision VGG16 state dict, or "
                                    "null; nothing is downloaded.")
        return path
    if named_enum is not None and named_enum is not enum:
        raise ValueError(f"FCN8s: backbone_weights {text} are {named_enum.__name__} but batch_norm is {batch_norm}: "
                         f"use {enum.__name__}.IMAGENET1K_V1 (or just IMAGENET1K_V1)")
    valid = [*enum.__members__, "DEFAULT"]
    if member not in valid:
        raise ValueError(f"FCN8s: backbone_weights {text!r}: unknown {enum.__name__} name; valid values are {valid} "
                         "or a local file path")
    if member in _FEATURES_ONLY:
        raise ValueError(f"FCN8s: backbone_weights {text}: those weights train only VGG16's features, not the "
                         "classifier that becomes fc6 / fc7; use IMAGENET1K_V1")
    weights = enum.DEFAULT if member == "DEFAULT" else enum[member]
    file_name = os.path.basename(urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not path.is_file():
        builder = "vgg16_bn" if batch_norm else "vgg16"
        raise FileNotFoundError(
            f"FCN8s: backbone_weights {text} ({enum.__name__}.{weights.name}) are read from the torch hub cache, and "
            f"{path} is not there; nothing is downloaded during training. Put {weights.url} there (on a machine "
            f"online: `python -c \"import torchvision; torchvision.models.{builder}(weights='{weights.name}')\"`, "
            f"then copy {file_name} into {path.parent}), or set TORCH_HOME to the folder whose hub/checkpoints "
            "holds it")
    return path


class SameConv2d(nn.Conv2d):
    """A stride-1 convolution with "same" zero padding (odd kernel ``kh x kw``, padding ``ph = kh // 2``,
    ``pw = kw // 2``), such as fc6 (7x7, padding 3), that skips the products with its padding on small maps.

    On a map of ``H <= ph + 1`` rows and ``W <= pw + 1`` columns every output sees every input: ``out[b, o, y, x] =
    sum_{c, i, j} w[o, c, i - y + ph, j - x + pw] * in[b, c, i, j]``. An ordinary convolution computes ``kh * kw``
    products per output and channel, most of them with zero padding (pool5 of a 128x128 input is 4x4: 49 against
    16; fc6 and fc7 then took about half of a CPU training step at the embedded budget). The same sums, and nothing
    else, are the correlation of the kernel window ``w[..., ph - H + 1 : ph + H, pw - W + 1 : pw + W]``, read as a
    batch of ``out_channels`` images, with the input, read as ``B`` filters: its ``(H - 1 - y, W - 1 - x)`` entry is
    the output at ``(y, x)``. Same parameters, same state dict, same function (float summation order aside); larger
    maps take the ordinary convolution. ``benchmarks/segmentation_fc6.py`` times a training step against
    ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 == 0:
            raise ValueError(f"SameConv2d: kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        h, w = x.shape[-2:]
        if x.dim() != 4 or h > kh // 2 + 1 or w > kw // 2 + 1:
            return super().forward(x)
        top, left = kh // 2 - h + 1, kw // 2 - w + 1
        window = self.weight[..., top:top + 2 * h - 1, left:left + 2 * w - 1]
        out = F.conv2d(window, x).flip(-2, -1).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)[:, None, None]
        # In the input's memory layout, as nn.Conv2d returns it: what follows (dropout's mask too) sees its strides.
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return out.contiguous(memory_format=layout)


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    # kernel 2f, stride f, padding f/2: output is exactly f times the input, aligned like the bilinear kernel.
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN8s(nn.Module):
    """FCN-8s: VGG16 features, fc6/fc7 as convolutions, pool4/pool3 skips, bilinear-initialised upsampling.

    Any input size works: the input is zero-padded (after normalisation) to a multiple of 32 and the logits are
    cropped back, so they always have the input's height and width.

    Args:
        num_classes: number of output channels (19 for Cityscapes train ids).
        backbone_weights: torchvision's ImageNet weights by name, ``IMAGENET1K_V1`` (``VGG16_Weights``, or
            ``VGG16_BN_Weights`` with ``batch_norm``; ``DEFAULT`` and ``VGG16_Weights.IMAGENET1K_V1`` work too), read
            from the torch hub cache (``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``, where torchvision
            downloads them), or the path of a local torchvision VGG16 state dict. Its ``features.*`` load into the
            backbone and ``classifier.0`` / ``classifier.3`` reshape into fc6 / fc7. Nothing is downloaded: a
            missing file is an error saying where to put it (:func:`backbone_weights_path`).
        width_divisor: divide every channel count (64..512 and the 4096 of fc6/fc7) by this, for tiny tests and
            quick CPU runs. 1 is the real FCN-8s; only 1 can load VGG16 weights.
        dropout: dropout probability after fc6 and fc7.
        batch_norm: the backbone in torchvision's ``vgg16_bn`` layout (batch norm after every convolution), which
            trains from scratch far faster than the paper's plain VGG16; ``backbone_weights`` must then be a
            ``vgg16_bn`` state dict. False is the paper's (and the book's) network.

    Shape:
        - Input: ``(B, 3, H, W)``, float in ``[0, 1]``.
        - Output: ``(B, num_classes, H, W)`` logits.
    """

    def __init__(self, num_classes: int, backbone_weights: str | Path | None = None, width_divisor: int = 1,
                 dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"FCN8s: num_classes must be >= 1, got {num_classes}")
        if width_divisor < 1 or 64 % width_divisor:
            raise ValueError(f"FCN8s: width_divisor must divide 64 (1, 2, 4, 8, 16, 32, 64), got {width_divisor}")
        self.num_classes = num_classes
        self.width_divisor = width_divisor
        # Resolved before the 134M parameters are built: a missing file fails at once.
        weights_path = backbone_weights_path(backbone_weights, batch_norm) if backbone_weights is not None else None
        cfg = [v if v == "M" else v // width_divisor for v in _VGG_CFGS["D"]]
        c3, c4, c5, fc = 256 // width_divisor, 512 // width_divisor, 512 // width_divisor, _FC_WIDTH // width_divisor
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        # Same module indices as torchvision's vgg16().features (vgg16_bn().features with batch_norm), so its state
        # dict loads key for key.
        self.batch_norm = batch_norm
        self.features = make_layers(cfg, batch_norm=batch_norm)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        # Indices of the pooling layers after which pool3 and pool4 come out (pool5 is the last layer).
        self._pool3, self._pool4 = pools[2], pools[3]
        self.fc6 = nn.Sequential(SameConv2d(c5, fc, 7), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
        self.up2_fr = _upsample(num_classes, 2)
        self.up2_pool4 = _upsample(num_classes, 2)
        self.up8 = _upsample(num_classes, 8)
        self._init_head()
        if weights_path is not None:
            self.load_backbone(weights_path)

    def _init_head(self) -> None:
        # He initialisation, as torchvision's VGG: PyTorch's default conv init shrinks the signal ~6x in variance
        # per ReLU layer, so 15 plain layers from scratch would start with vanishing activations and gradients.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)] + [self.fc6[0], self.fc7[0]]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        # Score layers keep PyTorch's default init: from scratch, the paper's zero-initialised skips leave the
        # backbone without gradient for the first steps (a long plateau); load_backbone zeroes them as the paper.

    def load_backbone(self, source: str | Path | dict[str, torch.Tensor]) -> None:
        """Load a torchvision VGG16 state dict (a weights name or local path, see :func:`backbone_weights_path`,
        or the dict) into the backbone, fc6 and fc7."""
        if isinstance(source, dict):
            state, where = source, "the given state dict"
        else:
            path = backbone_weights_path(source, self.batch_norm)
            state, where = torch.load(path, map_location="cpu", weights_only=True), str(path)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        needed = ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias")
        missing = [k for k in needed if k not in state]
        if missing or not features:
            raise ValueError(f"FCN8s: {where} is not a torchvision VGG16 state dict: it lacks "
                             f"{missing or ['features.*']}; expected the keys of torchvision.models.{self._vgg_name}().state_dict()")
        try:
            self.features.load_state_dict(features)
            fc6, fc7 = self.fc6[0], self.fc7[0]
            with torch.no_grad():
                # The fully connected layers become convolutions: 25088 = 512 x 7 x 7 inputs, in (C, H, W) order.
                fc6.weight.copy_(state["classifier.0.weight"].view(fc6.weight.shape))
                fc6.bias.copy_(state["classifier.0.bias"])
                fc7.weight.copy_(state["classifier.3.weight"].view(fc7.weight.shape))
                fc7.bias.copy_(state["classifier.3.bias"])
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"FCN8s: {where} does not fit this network ({self._vgg_name} layout, width_divisor="
                             f"{self.width_divisor}; VGG16 weights need width_divisor=1): {err}") from err
        # Fine-tuning as in the paper: the skips start at zero, so the net begins as FCN-32s and the skips grow in.
        with torch.no_grad():
            for conv in (self.score_pool4, self.score_pool3):
                conv.weight.zero_()
                conv.bias.zero_()

    @property
    def _vgg_name(self) -> str:
        return "vgg16_bn" if self.batch_norm else "vgg16"

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % _STRIDE, 0, -h % _STRIDE))

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone and fc6/fc7 on the normalised, padded input.

        Returns:
            ``pool3`` ``(B, 256/d, Hp/8, Wp/8)``, ``pool4`` ``(B, 512/d, Hp/16, Wp/16)``,
            ``pool5`` ``(B, 512/d, Hp/32, Wp/32)`` and ``fc7`` ``(B, 4096/d, Hp/32, Wp/32)``, where ``Hp, Wp`` are
            the input size rounded up to a multiple of 32 and ``d`` is ``width_divisor``.
        """
        x = self._pad((x - self.mean) / self.std)
        feats = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._pool3:
                feats["pool3"] = x
            elif i == self._pool4:
                feats["pool4"] = x
        feats["pool5"] = x
        feats["fc7"] = self.fc7(self.fc6(x))
        return feats

    def forward_head(self, feats: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Scores at strides 32, 16, 8 fused and upsampled to the padded size, then cropped to ``size``."""
        score = self.up2_fr(self.score_fr(feats["fc7"])) + self.score_pool4(feats["pool4"])
        score = self.up2_pool4(score) + self.score_pool3(feats["pool3"])
        return self.up8(score)[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), x.shape[-2:])
