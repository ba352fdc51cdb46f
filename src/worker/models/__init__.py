"""The worker's models: build artefacts once, then serve canonical, hashable results.

- ``build_models(out_dir, names)`` trains/exports the models deterministically (offline)
  and writes each into ``out_dir/<name>/`` with a manifest holding its model id.
- ``load_model(out_dir, name)`` gives a LoadedModel: decode a job's input bytes, run
  batches (float64, batch-invariant), encode and hash outputs.
- ``encode_digits_input`` / ``encode_text_input`` build job inputs on the client side.

See docs/models.md and docs/canonical.md.
"""

from worker.models.build import build_models, verify_model_dir
from worker.models.digits import digits_test_split, digits_train_split, encode_digits_input
from worker.models.errors import (
    ArtifactError,
    InvalidInput,
    ModelBuildError,
    UnknownModel,
    WorkerError,
)
from worker.models.manifest import (
    InputSpec,
    ModelManifest,
    SegmentManifest,
    compute_artifacts_hash,
    compute_model_id,
)
from worker.models.minilm import encode_text_input, tokenize
from worker.models.recipes import MODEL_NAMES
from worker.models.runtime import LoadedModel, clear_model_cache, load_model

__all__ = [
    "MODEL_NAMES",
    "ArtifactError",
    "InputSpec",
    "InvalidInput",
    "LoadedModel",
    "ModelBuildError",
    "ModelManifest",
    "SegmentManifest",
    "UnknownModel",
    "WorkerError",
    "build_models",
    "clear_model_cache",
    "compute_artifacts_hash",
    "compute_model_id",
    "digits_test_split",
    "digits_train_split",
    "encode_digits_input",
    "encode_text_input",
    "load_model",
    "tokenize",
    "verify_model_dir",
]
