"""The optimisation loop of the prompt learners: SGD + momentum, warm-up then cosine decay, resumable per epoch.

The schedule is torch's own (``LinearLR`` warm-up then ``CosineAnnealingLR`` in a ``SequentialLR``), stepped once
per batch; the loop runs on the learner's device (``train.device``).

Each epoch's batch order is drawn from ``seed``, ``fold`` and the epoch number alone, so a run resumed from an epoch
checkpoint continues exactly as an uninterrupted one would (same batches, same momentum, same result).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autorad import CLASS_NAMES
from autorad.config import TrainConfig
from autorad.core.errors import CheckpointError
from autorad.train.checkpoint import (
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
    split_prefix,
    with_prefix,
)
from autorad.train.losses import Objective


@dataclass
class TrainInputs:
    """Tensors of one training or validation set."""

    image: torch.Tensor  # (N, Dv), or (N, V, Dv): V views of each nodule (autorad.encoders.views)
    radiomics: torch.Tensor | None  # (N, R) preprocessed, or (N, M, R): M masks of each nodule (mask_augment)
    y: torch.Tensor  # (N,) class indices
    soft: torch.Tensor | None = None  # (N, 3) readers' class distribution (training targets only)
    attributes: torch.Tensor | None = None  # (N, 8) mean radiologist attributes (auxiliary targets only)

    def __len__(self) -> int:
        return len(self.y)

    def targets(self, idx: np.ndarray, device: torch.device | str = "cpu",
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The training-only targets of rows ``idx`` on ``device``."""
        t = torch.as_tensor(idx, dtype=torch.long)
        return tuple(None if a is None else a[t].to(device) for a in (self.soft, self.attributes))

    @property
    def n_views(self) -> int:
        """Views per nodule (1 for an (N, Dv) image tensor)."""
        return self.image.shape[1] if self.image.dim() == 3 else 1

    @property
    def n_masks(self) -> int:
        """Radiomics versions per nodule (1 for an (N, R) tensor or none; the first is the dataset mask's)."""
        return self.radiomics.shape[1] if self.radiomics is not None and self.radiomics.dim() == 3 else 1

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu", views: np.ndarray | None = None,
              masks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Rows ``idx`` on ``device``; with several views (radiomics versions) per nodule, view ``views[i]``
        (version ``masks[i]``) of row ``idx[i]``, else the first."""
        t = torch.as_tensor(idx, dtype=torch.long)
        return (_pick(self.image[t], views).to(device),
                None if self.radiomics is None else _pick(self.radiomics[t], masks).to(device), self.y[t].to(device))


def _pick(x: torch.Tensor, which: np.ndarray | None) -> torch.Tensor:
    """(B, K, D) -> (B, D): version ``which[i]`` of row i (the first when None); (B, D) is returned as it is."""
    if x.dim() != 3:
        return x
    return x[torch.arange(len(x)), torch.as_tensor(np.zeros(len(x)) if which is None else which, dtype=torch.long)]


@dataclass
class History:
    """Per-epoch training (and validation) loss and accuracy; which epoch was kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1

    def as_dict(self) -> dict[str, Any]:
        return {"train_loss": self.train_loss, "val_loss": self.val_loss, "val_accuracy": self.val_accuracy,
                "best_epoch": self.best_epoch}


def lr_schedule(opt: torch.optim.Optimizer, total_steps: int,
                warmup_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup_steps`` (factor (step + 1) / warmup_steps), then cosine decay to zero at
    ``total_steps``; call ``step()`` after every batch."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    cosine = CosineAnnealingLR(opt, T_max=max(1, total_steps - warmup_steps), eta_min=0.0)
    if warmup_steps < 1:
        return cosine
    warmup = LinearLR(opt, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1)
    return SequentialLR(opt, [warmup, cosine], milestones=[warmup_steps])


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> torch.Tensor | None:
    """scikit-learn's balanced weights (n / (classes present x count_c)); 0 for a class absent from ``y``; or None."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    w = np.zeros(n_classes)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.as_tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_logits(learner: nn.Module, data: TrainInputs, batch_size: int = 128) -> torch.Tensor:
    """Logits for every row, in order. With several views per nodule: the log of the class probabilities
    averaged over the views (test-time augmentation; their softmax is that average)."""
    learner.eval()
    device = _device_of(learner)
    out = []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data)))
        if data.n_views == 1:
            img, rad, _ = data.batch(idx, device)
            out.append(learner(img, rad).cpu())
            continue
        probs = [torch.softmax(learner(*data.batch(idx, device, np.full(len(idx), v))[:2]), dim=1).cpu()
                 for v in range(data.n_views)]
        out.append(torch.log(torch.stack(probs).mean(0).clamp_min(1e-12)))
    return torch.cat(out) if out else torch.zeros((0, 3))


def _param_groups(learner: nn.Module, params: list[tuple[str, nn.Parameter]], lr: float) -> list[dict[str, Any]]:
    """One optimiser group per learning-rate factor (the learner's ``lr_factor(name)``, 1 when it has none), in
    order of first appearance, so a learner without factors gets the single group it always had."""
    factor = getattr(learner, "lr_factor", lambda name: 1.0)
    groups: dict[float, list[nn.Parameter]] = {}
    for n, p in params:
        groups.setdefault(float(factor(n)), []).append(p)
    return [{"params": ps, "lr": lr * f} for f, ps in groups.items()]


def _device_of(learner: nn.Module) -> torch.device:
    return next(iter(learner.parameters()), torch.empty(0)).device


def _optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``opt.state_dict()`` split into its tensors (``"<param index>.<name>"``, for the safetensors file) and the
    rest (param groups, non-tensor state; JSON)."""
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().numpy() for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    rest = {str(i): {k: v for k, v in st.items() if not isinstance(v, torch.Tensor)} for i, st in sd["state"].items()}
    return tensors, {"state": rest, "param_groups": sd["param_groups"]}


def _load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, np.ndarray], saved: dict[str, Any]) -> None:
    """The inverse of :func:`_optimizer_state`: ``opt.load_state_dict`` of the saved tensors and JSON."""
    state: dict[int, dict[str, Any]] = {int(i): dict(st) for i, st in saved["state"].items()}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = torch.from_numpy(v.copy())
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def train_learner(learner: nn.Module, train: TrainInputs, cfg: TrainConfig, state_dir: Path | None,
                  fingerprint: str, fold: int, val: TrainInputs | None = None,
                  on_epoch: Callable[[int, float], None] | None = None) -> History:
    """Optimise the learner's trainable parameters in place; keep the best validation epoch when ``val`` is set.

    ``state_dir`` receives an epoch checkpoint after every epoch; a later call with the same ``fingerprint``
    resumes from it.
    """
    device = _device_of(learner)
    weights = class_weights(train.y.numpy(), len(CLASS_NAMES), cfg.class_weighting)
    objective = Objective(cfg, weights, len(CLASS_NAMES), learner, train.attributes).to(device)
    params = [(n, p) for n, p in learner.named_parameters() if p.requires_grad]
    params += [(f"aux.{n}", p) for n, p in objective.named_parameters()]
    opt = torch.optim.SGD(_param_groups(learner, params, cfg.lr), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    schedule = lr_schedule(opt, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch)
    history, start_epoch = History(), 0
    best_state: dict[str, np.ndarray] | None = None
    best_val = math.inf

    tensors, meta = {}, {}
    if state_dir is not None and checkpoint_exists(state_dir):
        try:
            tensors, meta = load_checkpoint(state_dir)
        except CheckpointError:  # killed between writing the tensors and the JSON: start the fold over
            tensors, meta = {}, {}
    if meta.get("fingerprint") == fingerprint and "optimizer" in meta:  # (an epoch state of an older autorad,
        # which kept momentum buffers by hand, has no optimizer state: that fold starts over)
        learner.load_learnable_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in split_prefix(tensors, "learner").items()})
        objective.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in split_prefix(tensors, "aux").items()})
        _load_optimizer_state(opt, split_prefix(tensors, "optimizer"), meta["optimizer"])
        schedule.load_state_dict(meta["scheduler"])
        best_state = split_prefix(tensors, "best") or None
        h = meta["history"]
        history = History(h["train_loss"], h["val_loss"], h["val_accuracy"], h["best_epoch"])
        best_val = min(history.val_loss) if history.val_loss else math.inf
        start_epoch = int(meta["epoch"]) + 1

    for epoch in range(start_epoch, cfg.epochs):
        learner.train()
        order = np.random.default_rng([cfg.seed, fold + 1, epoch]).permutation(len(train))
        # one random view per nodule and epoch (augmentation); its own stream, so 1 view draws nothing new
        view_of = (np.random.default_rng([cfg.seed, fold + 1, epoch, 1]).integers(train.n_views, size=len(train))
                   if train.n_views > 1 else None)
        # likewise one radiomics version (dataset mask or a perturbed one) per nodule and epoch (mask_augment)
        mask_of = (np.random.default_rng([cfg.seed, fold + 1, epoch, 2]).integers(train.n_masks, size=len(train))
                   if train.n_masks > 1 else None)
        total, count = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 0:
                continue
            img, rad, y = train.batch(idx, device, None if view_of is None else view_of[idx],
                                      None if mask_of is None else mask_of[idx])
            loss = objective(learner(img, rad), y, *train.targets(idx, device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.train_loss.append(total / max(count, 1))
        if val is not None and len(val):
            logits = predict_logits(learner, val)
            vloss = float(nn.functional.cross_entropy(logits, val.y))  # logits come back on the CPU
            history.val_loss.append(vloss)
            history.val_accuracy.append(float((logits.argmax(1) == val.y).float().mean()))
            if vloss < best_val:
                best_val, history.best_epoch = vloss, epoch
                best_state = {k: v.detach().cpu().numpy().copy() for k, v in learner.learnable_state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, history.train_loss[-1])
        if state_dir is not None:
            tensors = with_prefix({k: v.detach().cpu().numpy() for k, v in learner.learnable_state_dict().items()},
                                  "learner")
            opt_tensors, opt_rest = _optimizer_state(opt)
            tensors.update(with_prefix(opt_tensors, "optimizer"))
            tensors.update(with_prefix({k: v.detach().cpu().numpy() for k, v in objective.state_dict().items()},
                                       "aux"))
            if best_state is not None:
                tensors.update(with_prefix(best_state, "best"))
            save_checkpoint(state_dir, tensors, {"fingerprint": fingerprint, "epoch": epoch,
                                                 "history": history.as_dict(), "optimizer": opt_rest,
                                                 "scheduler": schedule.state_dict()})
    if objective.aux is not None:
        objective.aux.remove()
    if val is not None and best_state is not None:
        learner.load_learnable_state_dict({k: torch.from_numpy(v.copy()) for k, v in best_state.items()})
    elif val is None:
        history.best_epoch = cfg.epochs - 1
    return history
