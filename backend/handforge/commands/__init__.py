"""One module per ``handforge`` subcommand (see ``handforge.cli``)."""
