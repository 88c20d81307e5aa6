"""HTTP routes, one module per resource: accounts, tree, chunks, history."""
