"""Phone photos: every EXIF orientation decodes upright in training, predict and serving.

One picture is stored four ways by a real JPEG encoder (Pillow): upright with orientation 1,
and rotated with the orientation tags 3, 6 and 8 that turn it back upright. Each path that
reads images must hand the model the same pixels for all four; a picture rotated for real
(no tag) must differ, which shows the comparison can fail.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from timm.models import ResNet

from trainer.cli import main
from trainer.data.cache import ImageCache
from trainer.data.images import read_rgb
from trainer.data.loader import ImageSubset
from trainer.data.transforms import Pipeline, Resize

from .models import log_model, make_checkpoint

# Pillow transposition that stores the upright picture so that the tag turns it back.
STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}
TOLERANCE = 4.0  # mean absolute difference, 0-255 scale: JPEG re-encoding of rotated blocks
PIXEL_SCALE = 60  # normalised model inputs back to about the 0-255 scale (1 / (std * 255))


def picture() -> Image.Image:
    """A 240 x 360 picture whose every rotation and mirror looks different."""
    image = np.full((240, 360, 3), 40, dtype=np.uint8)
    image[:80, :120] = (230, 30, 30)
    image[150:, 250:] = (30, 200, 40)
    image[:, 170:190] = (20, 20, 220)
    image[100:130, :60] = (240, 240, 0)
    return Image.fromarray(image)


def save_oriented(path: Path, orientation: int, transpose: Image.Transpose | None) -> Path:
    stored = picture() if transpose is None else picture().transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """upright (tag 1), tag 3, 6 and 8 (all upright when honoured), and a real rotation."""
    root = tmp_path_factory.mktemp("phone")
    files = {"upright": save_oriented(root / "upright.jpg", 1, None)}
    for tag, transpose in STORED.items():
        files[f"tag{tag}"] = save_oriented(root / f"tag{tag}.jpg", tag, transpose)
    files["rotated"] = save_oriented(root / "rotated.jpg", 1, Image.Transpose.ROTATE_90)
    return files


def assert_upright_alike(arrays: dict[str, np.ndarray]) -> None:
    upright = arrays["upright"].astype(np.float64)
    for name, array in arrays.items():
        difference = np.abs(array.astype(np.float64) - upright).mean()
        if name == "rotated":
            assert difference > 2.5 * TOLERANCE, "a real rotation must look different"
        elif name != "upright":
            assert difference < TOLERANCE, f"{name} differs from upright by {difference:.1f}"


@pytest.mark.parametrize("size", [16, 128])  # 16: reduced-scale JPEG decode; 128: full decode
def test_training_dataset_sees_every_orientation_upright(
    photos: dict[str, Path], size: int
) -> None:
    names = list(photos)
    cache = ImageCache(tuple(photos[n] for n in names), Resize(size), capacity=len(names))
    subset = ImageSubset(
        cache,
        np.zeros(len(names), dtype=np.int64),
        np.arange(len(names)),
        Pipeline(size, None),
    )
    tensors, _ = subset[[(i, 0) for i in range(len(names))]]
    assert_upright_alike(dict(zip(names, tensors.numpy(), strict=True)))


@pytest.mark.parametrize("size", [16, 128])
def test_read_rgb_is_upright_with_and_without_reduced_decoding(
    photos: dict[str, Path], size: int
) -> None:
    arrays = {name: Resize(size)(read_rgb(path, at_least=size)) for name, path in photos.items()}
    assert_upright_alike(arrays)
    assert read_rgb(photos["tag6"]).shape == (240, 360, 3)  # full size, upright


class ModelInputs:
    """Captures every batch a timm ResNet is called with, in any code path of this process."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if isinstance(module, ResNet):
            self.batches.append(args[0].detach().float().cpu().numpy())

    def images(self) -> np.ndarray:
        return np.concatenate(self.batches)


@pytest.fixture
def model_inputs() -> Iterator[ModelInputs]:
    capture = ModelInputs()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(capture)
    try:
        yield capture
    finally:
        handle.remove()


@pytest.mark.parametrize("size", [16, 128])
def test_trainer_predict_sees_every_orientation_upright(
    photos: dict[str, Path], size: int, tmp_path: Path, model_inputs: ModelInputs
) -> None:
    checkpoint = make_checkpoint(tmp_path / "model", size)
    names = list(photos)
    out = tmp_path / "predictions.csv"
    args = ["predict", "--model", str(checkpoint), *map(str, photos.values()), "--out", str(out)]
    assert main(args) == 0
    predicted = pd.read_csv(out)["path"].tolist()
    assert predicted == [str(photos[n]) for n in names]
    assert_upright_alike(dict(zip(names, model_inputs.images() * PIXEL_SCALE, strict=True)))


@pytest.mark.parametrize("size", [16, 128])
def test_served_model_sees_every_orientation_upright(
    photos: dict[str, Path], size: int, tmp_path: Path, model_inputs: ModelInputs
) -> None:
    uri = log_model(make_checkpoint(tmp_path / "model", size))
    model = mlflow.pyfunc.load_model(uri)
    model_inputs.batches.clear()  # logging validated the input example
    names = list(photos)
    files = [base64.b64encode(photos[n].read_bytes()).decode("ascii") for n in names]
    model.predict(pd.DataFrame({"image": files}))
    assert_upright_alike(dict(zip(names, model_inputs.images() * PIXEL_SCALE, strict=True)))
