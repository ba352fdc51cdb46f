"""verimarket prover package."""
