"""The configs shipped with jaxtrain, installed as `jaxtrain.configs`: `--config=NAME[:VARIANT]`.

Each module has `get_config(variant=None)` and declares its variants in `VARIANTS`.
"""
