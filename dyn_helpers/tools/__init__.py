"""The book's build tooling, kept apart from what the notebooks import.

`runs` executes notebooks and writes the status page, `fingerprint` says what produced stored
outputs, `tolerance` compares outputs across processors, `calibrate` runs every notebook over
many seeds, and `bench` is the timing suite for GPUs. They need the `tools` extra of
`pyproject.toml` (nbformat, nbclient, nbconvert, nbval), which `make setup` installs.
"""
