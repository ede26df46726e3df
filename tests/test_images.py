"""The loader returns RGB uint8 or a named reason, for every kind of file the data holds."""

import numpy as np
import pytest

from kit.data import images, synthetic


@pytest.fixture
def rng():
    return np.random.default_rng(0)


EXPECTED = {
    "empty": images.EMPTY,
    "truncated": images.TRUNCATED,
    "text": images.NOT_IMAGE,
    "one-pixel": images.TOO_SMALL,
    "png": None,          # decoded: PNG bytes under a .jpg name are still a picture
    "grayscale": None,    # decoded to three channels
    "cmyk": None,         # decoded to RGB
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_planted_files(kind, rng, tmp_path):
    path = tmp_path / f"cat.{kind}.jpg"
    path.write_bytes(synthetic.bad_file(kind, rng))
    result = images.load_image(path)
    if EXPECTED[kind] is None:
        assert isinstance(result, np.ndarray)
        assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
    else:
        assert isinstance(result, images.Skip)
        assert result.reason == EXPECTED[kind]
        assert result.path == str(path)


def test_every_planted_kind_is_covered():
    assert set(synthetic.PLANTED_TRAIN.values()) | set(synthetic.PLANTED_TEST) == set(EXPECTED)


def test_channels_come_back_rgb(tmp_path):
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.jpg"
    path.write_bytes(synthetic.encode_jpeg(red, quality=100))
    image = images.load_image(path)
    assert image[..., 0].mean() > 240 and image[..., 2].mean() < 15


def test_missing_file_is_named_not_raised(tmp_path):
    result = images.load_image(tmp_path / "nope.jpg")
    assert isinstance(result, images.Skip) and result.reason == images.UNREADABLE


def test_header_gives_size_without_decoding(rng):
    picture = synthetic.draw_image(rng, 1)
    header = images.read_header(synthetic.encode_jpeg(picture))
    assert (header.format, header.width, header.height) == ("jpeg", picture.shape[1], picture.shape[0])
    png = synthetic.bad_file("png", rng)
    assert images.read_header(png).format == "png"
    assert images.read_header(b"hello").format == "other"


def test_bomb_refused_from_header_alone(tmp_path):
    # A PNG header claiming 20000 x 20000 pixels: refused before any pixel is allocated.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data)
    result = images.load_image(path)
    assert isinstance(result, images.Skip) and result.reason == images.TOO_LARGE
    assert result.detail == "20000x20000"


def test_reduced_decode_keeps_at_least_the_target(tmp_path, rng):
    picture = np.repeat(np.repeat(synthetic.draw_image(rng, 0)[:100, :100], 8, 0), 8, 1)  # 800 x 800
    path = tmp_path / "big.jpg"
    path.write_bytes(synthetic.encode_jpeg(picture))
    small = images.load_image(path, target=150)
    assert 150 <= min(small.shape[:2]) < 800
    assert images.load_image(path).shape[:2] == (800, 800)


def test_summary_counts_reasons():
    skips = [images.Skip("a", images.EMPTY), images.Skip("b", images.TRUNCATED), images.Skip("c", images.EMPTY)]
    assert images.summarize_skips(skips, "train") == "3 train images skipped: 2 empty-file, 1 truncated"
    assert images.summarize_skips([], "test") == "0 test images skipped"
