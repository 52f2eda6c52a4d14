"""One module per ``helios`` subcommand; each defines ``register(subparsers)``.

The CLI discovers the modules here, so adding a command is adding a file.
"""
