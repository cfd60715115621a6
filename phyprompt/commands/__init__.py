"""The CLI's subcommands, one module each; `phyprompt.cli` holds the argument parser and the error handling."""
