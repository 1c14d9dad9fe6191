"""Small helpers every stage uses: atomic file writes, distributed reductions, runtime speed settings."""
