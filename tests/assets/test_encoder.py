"""The encoder spec, ids, the clear error for missing weights, and the tiny real CLIP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adrag_assets.embeddings.encoder import ClipEncoder, decode_for_model, load_encoder
from adrag_assets.embeddings.spec import EncoderError, EncoderSpec, known_architectures
from tests.support.data import TEST_ENCODER


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


def test_the_torch_free_architecture_list_is_open_clips():
    import open_clip  # the encoder module (imported above) registered the project's configs

    assert known_architectures() == set(open_clip.list_models())
    assert "adrag-tiny" in known_architectures()


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


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def _scene(size=(96, 64)) -> Image.Image:
    """An asymmetric picture: a ramp, a dark block top left and a bright bar on the right."""
    w, h = size
    ramp = np.tile(np.linspace(30, 220, w, dtype=np.uint8), (h, 1))
    rgb = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 90)], axis=-1)
    rgb[: h // 3, : w // 4] = (10, 10, 40)
    rgb[:, -w // 8 :] = (250, 240, 20)
    return Image.fromarray(rgb, "RGB")


def test_exif_orientation_is_applied_before_the_model():
    enc = load_encoder(TEST_ENCODER, "fp32")
    upright = _scene()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # how a phone stores it, sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    tagged = _png(stored, exif=exif.tobytes())
    seen = decode_for_model(tagged, enc.image_size)
    assert np.array_equal(np.asarray(seen), np.asarray(upright))
    v_tagged, v_upright, v_sideways = enc.encode_images(
        [seen, upright, decode_for_model(_png(stored), enc.image_size)]
    )
    assert float(v_tagged @ v_upright) > 0.9999
    assert float(v_tagged @ v_sideways) < 0.999  # the sideways picture is another input


def test_16_bit_png_is_scaled_not_clipped_to_white():
    enc = load_encoder(TEST_ENCODER, "fp32")
    ramp16 = np.tile(np.linspace(0, 65535, 96), (64, 1)).astype(np.uint16)
    deep = Image.open(io.BytesIO(_png(Image.fromarray(ramp16))))
    assert deep.mode == "I;16"
    seen = decode_for_model(_png(Image.fromarray(ramp16)), enc.image_size)
    ramp8 = np.round(ramp16 / 257).astype(np.uint8)
    assert np.abs(np.asarray(seen)[..., 0].astype(int) - ramp8).max() <= 1
    white = Image.new("RGB", (96, 64), (255, 255, 255))
    v_deep, v_8bit, v_white = enc.encode_images(
        [seen, Image.fromarray(ramp8).convert("RGB"), white]
    )
    assert float(v_deep @ v_8bit) > 0.9999
    assert float(v_deep @ v_white) < 0.999
