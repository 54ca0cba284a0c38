"""AIMv2-large embedding throughput (crops/s) with RANDOM weights of the real architecture.

    python bench/aimv2_throughput.py                      # CUDA, bfloat16, batch 64, 20 timed batches
    python bench/aimv2_throughput.py --device cpu --dtype float32 --batch-size 2 --batches 2   # smoke run

The architecture comes from the registry entry ``aimv2-large-patch14-224`` (24 layers, width 1024, 224 px,
patch 14); weights are random because only speed is measured. Two numbers are printed: the model alone on
preprocessed tensors, and the whole ``VisionEncoder.embed`` path (HU window, resize, normalise, mean-pool) on
random 64x64 HU crops, which is what ``autorad embed`` runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autorad.encoders.aimv2 import Aimv2Encoder, build_model
from autorad.encoders.registry import get_entry


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; use --device cpu --dtype float32 for a smoke run")
    entry = get_entry("aimv2-large-patch14-224")
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    model = build_model(entry.options).to(a.device, dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    enc = Aimv2Encoder(entry, model, "random", device=a.device)
    size = entry.preprocess.size
    x = torch.randn(a.batch_size, 3, *size, device=a.device, dtype=dtype)
    with torch.no_grad():
        enc.forward_batch(x)  # warm-up
        _sync(a.device)
        t0 = time.perf_counter()
        for _ in range(a.batches):
            enc.forward_batch(x)
        _sync(a.device)
        model_rate = a.batch_size * a.batches / (time.perf_counter() - t0)
    crops = list(np.random.default_rng(0).integers(-1000, 400, (a.batch_size * a.batches, 64, 64)).astype(np.int16))
    t0 = time.perf_counter()
    emb = enc.embed(crops, batch_size=a.batch_size)
    _sync(a.device)
    full_rate = len(crops) / (time.perf_counter() - t0)
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"AIMv2-large ({n_params / 1e6:.0f}M params, random weights) on {name}, {a.dtype}, batch {a.batch_size}")
    print(f"model only:          {model_rate:8.1f} crops/s")
    print(f"embed() incl. preprocessing: {full_rate:8.1f} crops/s  -> output {emb.shape} {emb.dtype}")


if __name__ == "__main__":
    main()
