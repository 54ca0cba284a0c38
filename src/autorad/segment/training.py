"""Train the click segmenter on max-slice crops with consensus masks, and score it by patient-level K-fold.

Training windows are cut by the same :func:`~autorad.segment.window.click_window` the segmenter uses, centred on
the mask's click (:func:`~autorad.segment.core.seed_from_mask`) moved by up to ``jitter_px`` pixels (a user does
not click the exact centre), in one of the 8 flips/rotations. Loss: binary cross-entropy + soft Dice.
Scoring is in :mod:`autorad.segment.evaluation`.

Everything is seeded; with ``torch.set_num_threads(1)`` a run is reproducible on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autorad.segment.core import seed_from_mask
from autorad.segment.unet import DEFAULT_WIDTHS, UNet2d
from autorad.segment.window import WINDOW_PX, click_window, net_input


@dataclass
class CropSet:
    """Max-slice crops with a non-empty consensus mask."""

    images: np.ndarray  # (N, H, W) HU
    masks: np.ndarray  # (N, H, W) bool
    spacing_mm: np.ndarray  # (N,) in-plane pixel spacing
    patient_ids: np.ndarray  # (N,) str
    index: np.ndarray  # (N,) row in the source file

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> CropSet:
        return CropSet(self.images[rows], self.masks[rows], self.spacing_mm[rows], self.patient_ids[rows],
                       self.index[rows])


def load_crops(npz: str | Path) -> CropSet:
    """The dev max-slice crops (``images_hu``, ``consensus_mask``...), skipping those with an empty mask."""
    from autorad.data.maxslice import open_maxslice

    d = open_maxslice(npz)
    keep = np.flatnonzero(d["consensus_mask"].reshape(len(d["consensus_mask"]), -1).any(axis=1))
    return CropSet(d["images_hu"][keep], d["consensus_mask"][keep].astype(bool),
                   d["pixel_spacing_mm"][keep].astype(np.float64), d["patient_id"][keep].astype(str), keep)


def patient_folds(patient_ids: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """A fold per crop; all crops of a patient share one (autorad's fold rule, one label for all)."""
    from autorad.data.folds import assign_folds

    return assign_folds(patient_ids, np.zeros(len(patient_ids), dtype=int), n_folds=n_folds, seed=seed)


def _batch(crops: CropSet, rows: np.ndarray, rng: np.random.Generator, jitter_px: int,
           size: int) -> tuple[np.ndarray, ...]:
    xs, ys = [], []
    for i in rows:
        r, c = seed_from_mask(crops.masks[i])
        r += int(rng.integers(-jitter_px, jitter_px + 1))
        c += int(rng.integers(-jitter_px, jitter_px + 1))
        img = click_window(crops.images[i], (r, c), size)
        msk = click_window(crops.masks[i].astype(np.float32), (r, c), size) > 0  # air fill (-1000) -> False
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        img, msk = np.rot90(img, k), np.rot90(msk, k)
        if flip:
            img, msk = img[:, ::-1], msk[:, ::-1]
        xs.append(net_input(img))
        ys.append(msk[None])
    return np.stack(xs), np.stack(ys).astype(np.float32)


def fit(crops: CropSet, epochs: int = 10, seed: int = 0, batch_size: int = 32, lr: float = 3e-3,
        jitter_px: int = 2, widths: tuple[int, ...] = DEFAULT_WIDTHS, window_px: int = WINDOW_PX,
        log: Callable[[str], None] | None = None) -> UNet2d:
    """Train a U-Net on ``crops`` (AdamW, one-cycle learning rate); returns it in eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet2d(widths=widths)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(len(crops) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    bce = torch.nn.BCEWithLogitsLoss()
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(crops))
        total = 0.0
        for b in range(steps_per_epoch):
            x, y = _batch(crops, order[b * batch_size:(b + 1) * batch_size], rng, jitter_px, window_px)
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            logits = net(x)
            p = torch.sigmoid(logits)
            inter = (p * y).sum(dim=(1, 2, 3))
            soft_dice = (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3)) + 1)
            loss = bce(logits, y) + (1 - soft_dice).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(x)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs} loss {total / len(crops):.4f} ({time.time() - t0:.0f} s)")
    return net.eval()


def train_and_save(npz: str | Path, out: str | Path, n_folds: int = 5, fold: int | None = None, seed: int = 0,
                   epochs: int = 10, log: Callable[[str], None] | None = None) -> Path:
    """Train on every dev crop (``fold=None``, the shipped model) or on all folds but ``fold``; save to ``out``.

    One call is one independent training (a process, a Ray task...): it sets torch to one thread.
    """
    import torch

    from autorad.segment.model import save_segmenter

    torch.set_num_threads(1)
    crops = load_crops(npz)
    folds = patient_folds(crops.patient_ids, n_folds, seed)
    rows = np.arange(len(crops)) if fold is None else np.flatnonzero(folds != fold)
    t0 = time.time()
    net = fit(crops.subset(rows), epochs=epochs, seed=seed, log=log)
    meta = {"method": "unet-click", "trained_on": "all dev patients" if fold is None else
            f"dev patients outside fold {fold} of {n_folds} (patient-level, seed {seed})",
            "n_crops": int(len(rows)), "n_patients": int(len(np.unique(crops.patient_ids[rows]))),
            "epochs": epochs, "window_px": WINDOW_PX, "seed": seed, "fold": fold, "n_folds": n_folds,
            "train_seconds": round(time.time() - t0),
            "torch": torch.__version__}
    save_segmenter(net, out, meta)
    return Path(out)


def train_task(task: dict) -> str:
    """One training as an independent task (for :func:`autorad.core.tasks.run_tasks`: local processes or Ray).

    ``task`` holds the keyword arguments of :func:`train_and_save` (``npz``, ``out``, ``fold``...).
    """
    name = "all" if task.get("fold") is None else f"fold{task['fold']}"
    train_and_save(**task, log=lambda m: print(f"[{name}] {m}", flush=True))
    return name
