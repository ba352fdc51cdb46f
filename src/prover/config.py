"""How circuits are built: ezkl settings, where artefacts are cached, the SRS, solcjs.

The defaults are the settings that keep a digits-sized segment small and make segment ``i``'s
output hash equal segment ``i+1``'s input hash (docs/prover.md explains each choice).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ezkl

from prover.srs import CeremonySrs, LocalInsecureSrs, SrsSource

#: Bump when the build steps change what they produce, so caches rebuild.
RECIPE_VERSION = 1

#: The ezkl release circuits are built with (artefacts are not portable across releases).
EZKL_VERSION = importlib.metadata.version("ezkl")

#: EIP-170: the most runtime code a contract may have on Ethereum and most EVM chains.
EIP170_LIMIT = 24_576


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    """``$VERIMARKET_PROVER_CACHE``, else ``~/.cache/verimarket/prover``."""
    env = os.environ.get("VERIMARKET_PROVER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "verimarket" / "prover"


def default_solc_js() -> Path:
    """``$VERIMARKET_SOLC_JS``, else the repository's ``tools/solc.js``."""
    env = os.environ.get("VERIMARKET_SOLC_JS")
    return Path(env) if env else _repo_root() / "tools" / "solc.js"


#: ezkl's name (in settings.json) of each input/output visibility CircuitOptions takes.
IO_VISIBILITIES = {"hashed": "Hashed", "polycommit": "KZGCommit", "public": "Public"}


@dataclass(frozen=True)
class CircuitOptions:
    """The ezkl run arguments and calibration every segment of a model is built with.

    Input and output are KZG-committed inside the proof ("polycommit": no public instances;
    ~90k gas less per on-chain verification than two Poseidon hashes) and parameters
    "fixed" (the verifying key commits to the weights). One scale for every tensor and a
    rebase multiplier of 1 keep every boundary at ``2^scale``, so a segment's output is the
    next one's input bit for bit.
    ``decomp_base``/``decomp_legs`` make range checks use a 256-entry table, which keeps the
    circuits at 2^11..2^13 rows. One inner column gives fewer committed columns and so
    ~17 % less verify gas, at the price of more rows (docs/prover.md has the trade).
    """

    scale: int = 10
    scale_rebase_multiplier: int = 1
    decomp_base: int = 256
    decomp_legs: int = 4
    num_inner_cols: int = 1
    max_logrows: int = 16
    calibration_samples: int = 16
    calibration_seed: int = 0
    #: How a segment's input and output are public: "hashed" (one Poseidon hash each: two
    #: public instances), "polycommit" (a KZG commitment each, inside the proof: no public
    #: instances; segments of a model share one logrows so equal boundaries give equal
    #: commitments) or "public" (every value an instance; measured, not linked).
    io_visibility: str = "polycommit"
    #: Rows of every circuit (2^logrows) when set; build_model sets it for "polycommit".
    logrows: int | None = None

    def __post_init__(self) -> None:
        if self.io_visibility not in IO_VISIBILITIES:
            raise ValueError(
                f"io_visibility {self.io_visibility!r} is not one of {sorted(IO_VISIBILITIES)}"
            )
        if self.logrows is not None and not 1 <= self.logrows <= self.max_logrows:
            raise ValueError(f"logrows {self.logrows} is not in 1..{self.max_logrows}")

    def run_args(self, symbols: Sequence[str] = ()) -> ezkl.PyRunArgs:
        """ezkl's run arguments; each symbolic input dimension (a dynamic batch axis) is
        fixed to 1. (ezkl's type stub lists no attributes, hence setattr.)"""
        args = ezkl.PyRunArgs()
        values: dict[str, object] = {
            "input_visibility": self.io_visibility,
            "output_visibility": self.io_visibility,
            "param_visibility": "fixed",
            "input_scale": self.scale,
            "param_scale": self.scale,
            "scale_rebase_multiplier": self.scale_rebase_multiplier,
            "decomp_base": self.decomp_base,
            "decomp_legs": self.decomp_legs,
            "num_inner_cols": self.num_inner_cols,
            "variables": [(symbol, 1) for symbol in symbols] or [("batch_size", 1)],
        }
        for name, value in values.items():
            setattr(args, name, value)
        return args


@dataclass(frozen=True)
class SolcOptions:
    """solcjs 0.8.20 (the version ezkl's verifiers are written for) behind tools/solc.js."""

    solc_js: Path = field(default_factory=default_solc_js)
    solcjs_module: str = "solc-0_8_20"
    solc_version: str = "0.8.20"
    #: High: solc then keeps the verifier's constants inline (PUSH32) instead of copying
    #: them from code: -12,000 gas per verification for +5 KB of code (docs/prover.md).
    optimizer_runs: int = 100_000
    evm_version: str = "shanghai"
    node: str = "node"
    timeout_s: float = 300.0


@dataclass(frozen=True)
class ProverConfig:
    """Everything a build depends on. ``srs`` None means insecure local SRS files under
    ``cache_dir/srs`` (development); pass ``CeremonySrs(path)`` in production."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    srs: SrsSource | None = None
    circuit: CircuitOptions = field(default_factory=CircuitOptions)
    solc: SolcOptions = field(default_factory=SolcOptions)
    max_verifier_bytes: int = EIP170_LIMIT

    @classmethod
    def from_env(cls) -> ProverConfig:
        """Defaults, with ``$VERIMARKET_SRS_FILE`` selecting a ceremony SRS when set."""
        ceremony = os.environ.get("VERIMARKET_SRS_FILE")
        return cls(srs=CeremonySrs(Path(ceremony)) if ceremony else None)

    @property
    def srs_source(self) -> SrsSource:
        return self.srs if self.srs is not None else LocalInsecureSrs(self.cache_dir / "srs")

    def build_digest(self) -> str:
        """sha256 over what shapes a circuit besides its ONNX: options, versions, SRS kind."""
        solc = asdict(self.solc)
        solc.pop("solc_js")  # where the wrapper lives does not change what it compiles
        solc.pop("timeout_s")
        srs = self.srs_source
        data = {
            "recipe": RECIPE_VERSION,
            "ezkl": EZKL_VERSION,
            "circuit": asdict(self.circuit),
            "solc": solc,
            "srs": srs.label,
            "srs_path": str(srs.path) if isinstance(srs, CeremonySrs) else None,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
