"""The encoder spec, ids, the clear error for missing weights, and the tiny real CLIP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adrag_assets.embeddings.encoder import ClipEncoder, EncoderError, EncoderSpec, load_encoder


def test_spec_parsing_and_ids(tmp_path):
    assert EncoderSpec.parse("random:adrag-tiny").encoder_id == "random:adrag-tiny@0"
    assert EncoderSpec.parse("random:ViT-B-32@7").encoder_id == "random:ViT-B-32@7"
    assert EncoderSpec.parse("random:ViT-B-32@7").is_random
    named = EncoderSpec.parse("ViT-B-32:laion2b_s34b_b79k")
    assert (named.pretrained, named.is_random) == ("laion2b_s34b_b79k", False)
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights-a")
    a = EncoderSpec.parse(f"ViT-B-32:{ckpt}").encoder_id
    other = tmp_path / "w2.pt"
    other.write_bytes(b"weights-b")
    assert a.startswith("ViT-B-32:file-") and a != EncoderSpec.parse(f"ViT-B-32:{other}").encoder_id


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "is not 'ARCH:PRETRAINED_TAG'"),
        ("NoSuchNet:foo", "unknown open_clip architecture"),
        ("random:ViT-B-32@x", "seed after '@'"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(EncoderError, match=message):
        EncoderSpec.parse(spec)


def test_missing_pretrained_weights_fail_clearly_and_name_the_offline_option():
    with pytest.raises(EncoderError) as e:
        ClipEncoder(EncoderSpec.parse("ViT-B-32:laion2b_s34b_b79k"))
    assert "random:ViT-B-32" in str(e.value)
    with pytest.raises(EncoderError, match="no pretrained tag"):
        ClipEncoder(EncoderSpec.parse("ViT-B-32:not_a_tag"))
    with pytest.raises(EncoderError, match="does not exist"):
        ClipEncoder(EncoderSpec.parse("ViT-B-32:/nowhere/weights.pt"))


def test_random_weights_are_fixed_by_seed_and_labelled():
    images = [Image.new("RGB", (80, 60), c) for c in [(255, 0, 0), (0, 90, 200)]]
    a = load_encoder("random:adrag-tiny@1", "fp32")
    b = ClipEncoder(EncoderSpec.parse("random:adrag-tiny@1"), "fp32")
    c = load_encoder("random:adrag-tiny@2", "fp32")
    va, vb, vc = (e.encode_images(images) for e in (a, b, c))
    assert va.shape == (2, a.dim) and va.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(va, vb, atol=1e-6)
    assert not np.allclose(va, vc, atol=1e-3)
    assert "NOT semantic" in a.label
    t = a.encode_texts(["a beagle", "a cat"])
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


def test_bf16_stays_close_to_fp32():
    images = [Image.new("RGB", (64, 64), (i * 40, 100, 255 - i * 40)) for i in range(4)]
    fp32 = ClipEncoder(EncoderSpec.parse("random:adrag-tiny@3"), "fp32").encode_images(images)
    bf16 = ClipEncoder(EncoderSpec.parse("random:adrag-tiny@3"), "bf16").encode_images(images)
    assert float((fp32 * bf16).sum(axis=1).min()) > 0.99
