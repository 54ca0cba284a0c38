"""``tiny-*`` encoders: small networks with seeded RANDOM weights, for fast tests and benchmarks only.

They use the same code paths as the real encoders (AIMv2 architecture, BERT mean pooling) so tests of
preprocessing, caching and prompt learning exercise real logic; their outputs mean nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from autorad.core.errors import AutoradError
from autorad.encoders import aimv2
from autorad.encoders.base import VisionEncoder
from autorad.encoders.minilm import BertMeanEncoder, package_model_dir
from autorad.encoders.registry import EncoderEntry, get_entry


class TinyCnn3d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, dim, 3, stride=2, padding=1),
                                 nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3, 4))


class TinyVisionEncoder(VisionEncoder):
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.entry.kind == "vision3d":
            return self.model(x)
        return self.model(pixel_values=x).last_hidden_state.mean(dim=1)


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> TinyVisionEncoder | BertMeanEncoder:
    """Build the tiny encoder with its seeded random weights (``weights`` must be None)."""
    if weights is not None:
        raise AutoradError(f"{entry.name} is a random test encoder and takes no weights")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(int(entry.options.get("seed", 0)))
    try:
        if entry.kind == "vision2d":
            return TinyVisionEncoder(entry, aimv2.build_model(entry.options), f"random-seed{entry.options['seed']}",
                                     device)
        if entry.kind == "vision3d":
            return TinyVisionEncoder(entry, TinyCnn3d(entry.dim), f"random-seed{entry.options['seed']}", device)
        from transformers import AutoTokenizer, BertConfig, BertModel

        w = int(entry.options["width"])
        tok = AutoTokenizer.from_pretrained(str(package_model_dir(get_entry("minilm-l6-text"))))
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=w, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=2 * w, max_position_embeddings=128)
        return BertMeanEncoder(entry, BertModel(cfg, add_pooling_layer=False), tok,
                               f"random-seed{entry.options['seed']}", max_length=128).to(device)
    finally:
        torch.random.set_rng_state(gen_state)
