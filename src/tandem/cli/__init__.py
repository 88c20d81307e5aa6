"""The `tandem` command line (CLI.md is the contract)."""
