"""The two digits classifiers (MLP and CNN) trained on scikit-learn's 8x8 digits.

Both take one 8x8 image whose pixels are integers 0..16, sent as a canonical tensor of
shape (8, 8) at scale 2^4: the stored integer is the pixel itself and the real value the
model sees is pixel / 16, in [0, 1]. Both output 10 logits. Each layer block is a segment
with its own ONNX graph (batch 1, as ezkl proves it); the whole model is exported too, with
a dynamic batch axis.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load as safetensors_load
from torch import nn

from market.canonical import CanonicalEncodingError, decode_tensor, encode_quantized
from worker.models.common import (
    BuiltFiles,
    deterministic_training,
    export_onnx,
    safetensors_bytes,
)
from worker.models.errors import InvalidInput, ModelBuildError
from worker.models.manifest import InputSpec, atomic_write_bytes

IMAGE_SHAPE = (8, 8)
PIXEL_MAX = 16
#: Input scale: pixel p is stored as the integer p and means p / 2^4.
INPUT_SCALE_BITS = 4
NUM_CLASSES = 10
TRAIN_SEED = 0
EPOCHS = 60
BATCH_SIZE = 32
LEARNING_RATE = 3e-3

DIGITS_INPUT = InputSpec(
    shape=IMAGE_SHAPE,
    scale_bits=INPUT_SCALE_BITS,
    min_value=0,
    max_value=PIXEL_MAX,
    description=(
        "one 8x8 grey image (scikit-learn digits format): pixel p in 0..16 stored as the "
        "integer p at scale 2^4, so the model sees p/16 in [0, 1]"
    ),
)

Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]


@cache
def _split() -> tuple[Images, Labels, Images, Labels]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.uint8)
    labels = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return x_train, y_train, x_test, y_test


def digits_train_split() -> tuple[Images, Labels]:
    """The fixed training split: images uint8 (n, 8, 8) with values 0..16, labels 0..9."""
    x_train, y_train, _, _ = _split()
    return x_train.copy(), y_train.copy()


def digits_test_split() -> tuple[Images, Labels]:
    """The fixed test split (25 %, stratified, random_state 0): images uint8 (n, 8, 8), labels."""
    _, _, x_test, y_test = _split()
    return x_test.copy(), y_test.copy()


class AddChannel(nn.Module):
    """(n, 8, 8) -> (n, 1, 8, 8); one ONNX Unsqueeze (nn.Unflatten exports a shape subgraph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


def make_mlp() -> nn.Sequential:
    """MLP 64 -> 32 -> 16 -> 10; one segment per Linear(+ReLU) block."""
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()),
            fc2=nn.Sequential(nn.Linear(32, 16), nn.ReLU()),
            fc3=nn.Sequential(nn.Linear(16, NUM_CLASSES)),
        )
    )


def make_cnn() -> nn.Sequential:
    """conv 1->8 (3x3) -> conv 8->16 (3x3, stride 2) -> linear 256->10; one segment each."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Sequential(AddChannel(), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()),
            conv2=nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
            head=nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, NUM_CLASSES)),
        )
    )


ARCHITECTURES: dict[str, Callable[[], nn.Sequential]] = {
    "digits-mlp": make_mlp,
    "digits-cnn": make_cnn,
}


def images_to_tensor(images: npt.NDArray[np.generic], dtype: torch.dtype) -> torch.Tensor:
    """Pixels 0..16 to the model's input scale (p / 16), exact in float32 and float64."""
    return torch.from_numpy(np.asarray(images, dtype=np.float64) / PIXEL_MAX).to(dtype)


def train(name: str) -> nn.Sequential:
    """Train ``name`` deterministically on the training split (CPU, float32, one thread)."""
    x_train, y_train = digits_train_split()
    with deterministic_training(TRAIN_SEED):
        model = ARCHITECTURES[name]()
        inputs = images_to_tensor(x_train, torch.float32)
        targets = torch.from_numpy(y_train)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loss_fn = nn.CrossEntropyLoss()
        order = torch.Generator().manual_seed(TRAIN_SEED)
        model.train()
        for _ in range(EPOCHS):
            permutation = torch.randperm(len(inputs), generator=order)
            for start in range(0, len(inputs), BATCH_SIZE):
                index = permutation[start : start + BATCH_SIZE]
                optimizer.zero_grad()
                loss = loss_fn(model(inputs[index]), targets[index])
                loss.backward()
                optimizer.step()
        model.eval()
    return model


def accuracy(model: nn.Module, images: Images, labels: Labels) -> float:
    """Top-1 accuracy with the canonical float64 inference."""
    model64 = _float64_copy(model)
    with torch.inference_mode():
        logits = model64(images_to_tensor(images, torch.float64))
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def build(name: str, staging: Path, log: Callable[[str], None]) -> BuiltFiles:
    """Train, check and export ``name`` into ``staging``."""
    model = train(name)
    x_train, y_train = digits_train_split()
    x_test, y_test = digits_test_split()
    train_acc = accuracy(model, x_train, y_train)
    test_acc = accuracy(model, x_test, y_test)
    log(f"{name}: test accuracy {test_acc:.4f} (train {train_acc:.4f}, {len(y_test)} test images)")
    if test_acc < 0.9:
        raise ModelBuildError(name, f"test accuracy {test_acc:.4f} is below 0.9")

    atomic_write_bytes(staging / "weights.safetensors", safetensors_bytes(model.state_dict()))
    example = torch.zeros((1, *IMAGE_SHAPE), dtype=torch.float32)
    atomic_write_bytes(
        staging / "model.onnx",
        export_onnx(
            model,
            (example,),
            ["input"],
            ["logits"],
            {"input": {0: "batch"}, "logits": {0: "batch"}},
        ),
    )
    segments: list[tuple[str, str]] = []
    boundary = example
    for seg_name, block in model.named_children():
        path = f"segments/{seg_name}.onnx"
        atomic_write_bytes(staging / path, export_onnx(block, (boundary,), ["input"], ["output"]))
        with torch.no_grad():
            boundary = block(boundary)
        segments.append((seg_name, path))
    return BuiltFiles(
        segments=segments,
        weights_files=("weights.safetensors",),
        onnx_file="model.onnx",
        metrics={"test_accuracy": test_acc, "train_accuracy": train_acc},
    )


def load_module(name: str, model_dir: Path, weights_files: Sequence[str]) -> nn.Module:
    """The float32 module with the built weights (the caller moves it to float64/device)."""
    model = ARCHITECTURES[name]()
    (weights_file,) = weights_files
    model.load_state_dict(safetensors_load((model_dir / weights_file).read_bytes()))
    return model.eval()


def decode_input(data: bytes, model: str) -> torch.Tensor:
    """Validate one job input and return it as a float64 (8, 8) tensor of pixel / 16."""
    try:
        tensor = decode_tensor(data, max_elements=4096)
    except CanonicalEncodingError as exc:
        raise InvalidInput(f"not a canonical tensor: {exc.reason}", model) from exc
    if tensor.scale_bits != INPUT_SCALE_BITS:
        raise InvalidInput(
            f"scale 2^{tensor.scale_bits}, expected 2^{INPUT_SCALE_BITS} "
            "(pixels 0..16 stored as integers at scale 2^4)",
            model,
        )
    if tensor.shape != IMAGE_SHAPE:
        raise InvalidInput(f"shape {list(tensor.shape)}, expected {list(IMAGE_SHAPE)}", model)
    low, high = int(tensor.values.min()), int(tensor.values.max())
    if low < 0 or high > PIXEL_MAX:
        raise InvalidInput(f"pixel values in [{low}, {high}], expected 0..{PIXEL_MAX}", model)
    return torch.from_numpy(tensor.to_float())


def encode_digits_input(image: npt.ArrayLike) -> bytes:
    """Client helper: the canonical job input for an 8x8 image with integer pixels 0..16."""
    array = np.asarray(image)
    if array.shape != IMAGE_SHAPE:
        raise InvalidInput(f"image shape {list(array.shape)}, expected {list(IMAGE_SHAPE)}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidInput(f"image dtype {array.dtype} is not numeric")
    as_float = array.astype(np.float64)
    if not np.all(np.isfinite(as_float)) or not np.array_equal(as_float, np.round(as_float)):
        raise InvalidInput("pixels must be whole numbers 0..16 (scikit-learn digits format)")
    if as_float.min() < 0 or as_float.max() > PIXEL_MAX:
        raise InvalidInput(f"pixel values must be 0..{PIXEL_MAX}")
    return encode_quantized(as_float.astype(np.int64), INPUT_SCALE_BITS)


def forward(model: nn.Module, batch: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One forward pass over a batch of decoded inputs: (n, 10) float64 logits."""
    logits: torch.Tensor = model(torch.stack(batch).to(device=device, dtype=torch.float64))
    return logits


def _float64_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval()
