"""One module per ``progopt`` subcommand; each exposes ``register(subparsers)``."""
