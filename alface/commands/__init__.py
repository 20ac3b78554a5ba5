"""One module per `alface` subcommand (see alface/cli.py for the contract)."""
