"""The runner: stages of runs, where they execute (Dask, a GPU sprint), and how they are laid out."""
