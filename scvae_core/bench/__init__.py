"""The bench: what this machine's hardware allows (`scvae bench`), the appendix's tables from it,
and make's wall times. Measures only; no result of the paper depends on it."""
