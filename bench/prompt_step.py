"""One AutoRad training step, batched (all B x C prompts in one text-encoder call) vs a per-nodule loop.

    python bench/prompt_step.py [--text minilm-l6-text] [--batch 32] [--n-ctx 50] [--repeats 3] [--threads N]

Same process, same learner, same inputs, steps interleaved: prints the median time per step of each path, the
speed-up ratio (target >= 3x) and whether the two losses agree to 1e-5. Both paths do the same arithmetic; the
batched one saves the per-call overhead and runs larger matrix products, so the ratio depends on the hardware
and the number of threads (see docs/models.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from autorad.encoders import load_encoder
from autorad.train.kinds.prompting import build_learner


def step(learner, forward, img, rad, y, opt) -> tuple[float, float]:
    """One SGD step with ``forward`` (bound method); returns (seconds, loss)."""
    t0 = time.perf_counter()
    loss = F.cross_entropy(forward(img, rad), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default="minilm-l6-text")
    ap.add_argument("--kind", default="autorad")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-ctx", type=int, default=50)
    ap.add_argument("--image-dim", type=int, default=1280)
    ap.add_argument("--radiomics-dim", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    text = load_encoder(a.text)
    classes = ["benign", "unsure", "malignant"]
    learner = build_learner(a.kind, text, classes, image_dim=a.image_dim, radiomics_dim=a.radiomics_dim,
                            n_ctx=a.n_ctx)
    params = [p for p in learner.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(1)
    img = torch.randn(a.batch, a.image_dim, generator=g)
    rad = torch.randn(a.batch, a.radiomics_dim, generator=g)
    y = torch.randint(0, len(classes), (a.batch,), generator=g)

    # Same starting weights for both paths: lr 0 keeps them fixed, so every step sees the same model.
    opt = torch.optim.SGD(params, lr=0.0)
    step(learner, learner.forward, img, rad, y, opt)  # warm-up
    batched, looped = [], []
    for _ in range(a.repeats):  # interleaved, so that a change in machine load hits both paths alike
        batched.append(step(learner, learner.forward, img, rad, y, opt))
        looped.append(step(learner, learner.forward_loop, img, rad, y, opt))
    tb = statistics.median(t for t, _ in batched)
    tl = statistics.median(t for t, _ in looped)
    diff = abs(batched[0][1] - looped[0][1])
    print(f"text encoder {a.text}, kind {a.kind}, batch {a.batch} x {len(classes)} classes, n_ctx {a.n_ctx}, "
          f"torch threads {torch.get_num_threads()}")
    n_prompts = len(classes) if a.kind == "coop" else a.batch * len(classes)  # coop: shared prompts, once
    print(f"batched step (one text-encoder call of {n_prompts} prompts): {tb:.3f} s")
    print(f"per-nodule loop step ({a.batch} calls of {len(classes)} prompts):       {tl:.3f} s")
    print(f"speed-up: {tl / tb:.2f}x (target >= 3x)")
    print(f"loss batched {batched[0][1]:.7f}, loop {looped[0][1]:.7f}, |diff| {diff:.2e} "
          f"({'agree' if diff <= 1e-5 else 'DISAGREE'} to 1e-5)")


if __name__ == "__main__":
    main()
