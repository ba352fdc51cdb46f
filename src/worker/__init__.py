"""verimarket worker package."""
