"""Images are resized as the reference resizes them: bilinear, half-pixel centres, no antialias."""

import numpy as np

from lopt_tasks._images import prepare_images


def _bilinear_by_hand(img, out_h, out_w):
    """The reference's bilinear sample of a (H, W) image, written out pixel by pixel."""
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y = (i + 0.5) * h / out_h - 0.5
            x = (j + 0.5) * w / out_w - 0.5
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            dy, dx = y - y0, x - x0
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            out[i, j] = (
                (1 - dy) * (1 - dx) * img[y0, x0]
                + (1 - dy) * dx * img[y0, x1]
                + dy * (1 - dx) * img[y1, x0]
                + dy * dx * img[y1, x1]
            )
    return out


def test_a_28x28_image_shrunk_to_8x8_is_sampled_bilinearly_without_antialiasing():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, size=(28, 28)).astype(np.uint8)
    got = prepare_images(img[None, :, :, None], 255.0, (8, 8), black_and_white=False)
    assert got.shape == (1, 8, 8, 1) and got.dtype == np.float32
    # Output pixel (0, 0) samples input position (1.25, 1.25): weights 9/16, 3/16, 3/16, 1/16.
    px = img.astype(np.float64) / 255.0
    corner = 0.5625 * px[1, 1] + 0.1875 * px[1, 2] + 0.1875 * px[2, 1] + 0.0625 * px[2, 2]
    np.testing.assert_allclose(got[0, 0, 0, 0], corner, rtol=1e-5)
    np.testing.assert_allclose(got[0, :, :, 0], _bilinear_by_hand(px, 8, 8), rtol=1e-5, atol=1e-6)


def test_shrinking_keeps_the_contrast_that_antialiasing_would_blur():
    # A 1-pixel checkerboard: bilinear samples at quarter-pixel offsets give 0.375 and
    # 0.625 (std 0.125); an antialiasing filter averages it to about 0.5 everywhere.
    import jax

    board = (np.indices((28, 28)).sum(0) % 2).astype(np.float32)
    got = prepare_images(board[None, :, :, None], 1.0, (8, 8), black_and_white=False)
    np.testing.assert_allclose(got.std(), 0.125, rtol=1e-4)
    blurred = np.asarray(jax.image.resize(board, (8, 8), method="linear"))
    assert blurred.std() < 0.05
    np.testing.assert_allclose(got[0, :, :, 0], _bilinear_by_hand(board, 8, 8), atol=1e-5)
