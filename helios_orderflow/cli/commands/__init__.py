"""One module per ``helios`` subcommand; each defines ``register(subparsers)``, given the parser's
``add_subparsers()`` action.

The CLI discovers the modules here, so adding a command is adding a file.
"""
