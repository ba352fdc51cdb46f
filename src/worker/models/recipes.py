"""The table of models the worker knows how to build and serve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from worker.llm import artefacts as smollm2
from worker.models import digits, minilm
from worker.models.common import OUTPUT_SCALE_BITS, BuiltFiles
from worker.models.errors import UnknownModel
from worker.models.manifest import InputSpec


@dataclass(frozen=True)
class Recipe:
    """How to build one model and how to run it.

    Bump ``version`` whenever a change alters the artefacts (architecture, training,
    export): it is written into spec.json, so the model id changes with it, and a build
    folder made by an older version is rebuilt rather than reused.
    """

    name: str
    kind: str
    version: int
    description: str
    input: InputSpec
    output_shape: tuple[int, ...]
    build: Callable[[str, Path, Callable[[str], None]], BuiltFiles]
    load_module: Callable[[Path, Sequence[str]], nn.Module]
    decode_input: Callable[[bytes, str], torch.Tensor]
    forward: Callable[[nn.Module, list[torch.Tensor], torch.device], torch.Tensor]
    output_scale: int = OUTPUT_SCALE_BITS


def _load_digits(name: str, model_dir: Path, weights_files: Sequence[str]) -> nn.Module:
    return digits.load_module(name, model_dir, weights_files)


def _load_minilm(model_dir: Path, _weights_files: Sequence[str]) -> nn.Module:
    return minilm.load_module(model_dir)


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe(
        name="digits-mlp",
        kind="image-classifier",
        version=1,
        description="MLP 64-32-16-10 (ReLU) on scikit-learn 8x8 digits; output: 10 logits",
        input=digits.DIGITS_INPUT,
        output_shape=(digits.NUM_CLASSES,),
        build=digits.build,
        load_module=partial(_load_digits, "digits-mlp"),
        decode_input=digits.decode_input,
        forward=digits.forward,
    ),
    "digits-cnn": Recipe(
        name="digits-cnn",
        kind="image-classifier",
        version=1,
        description=(
            "CNN conv3x3(1->8)-ReLU, conv3x3/2(8->16)-ReLU, linear 256->10 on scikit-learn "
            "8x8 digits; output: 10 logits"
        ),
        input=digits.DIGITS_INPUT,
        output_shape=(digits.NUM_CLASSES,),
        build=digits.build,
        load_module=partial(_load_digits, "digits-cnn"),
        decode_input=digits.decode_input,
        forward=digits.forward,
    ),
    "minilm": Recipe(
        name="minilm",
        kind="text-embedding",
        version=1,
        description=(
            "all-MiniLM-L6-v2 sentence embeddings (BERT 6 layers, mean pooling, L2 "
            "normalisation); output: 384-d unit vector"
        ),
        input=minilm.MINILM_INPUT,
        output_shape=(minilm.HIDDEN,),
        build=minilm.build,
        load_module=_load_minilm,
        decode_input=minilm.decode_input,
        forward=minilm.forward,
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(RECIPES)

# Generative models: built only when named (build_models(out, ["smollm2"])), served by
# worker.llm's engine, not load_model. See docs/llm.md.
RECIPES["smollm2"] = Recipe(
    name="smollm2",
    kind="text-generation",
    version=1,
    description=smollm2.DESCRIPTION,
    input=smollm2.SMOLLM2_INPUT,
    output_shape=smollm2.OUTPUT_SHAPE,
    build=smollm2.build,
    load_module=smollm2.load_module,
    decode_input=smollm2.decode_input,
    forward=smollm2.forward,
    output_scale=smollm2.OUTPUT_SCALE_BITS,
)


def recipe(name: str) -> Recipe:
    """The recipe for ``name``, or UnknownModel."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownModel(name, MODEL_NAMES) from None
