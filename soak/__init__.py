"""The fault suite (`make soak`, `python -m soak.run [--slice]`): see soak/README.md."""
