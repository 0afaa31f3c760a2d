"""`python -m jaxtrain COMMAND ...`: the `jaxtrain` command (jaxtrain.command)."""

from jaxtrain.command import entry_point

entry_point()
