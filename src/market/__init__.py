"""verimarket market package."""
