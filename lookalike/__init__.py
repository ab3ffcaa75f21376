"""Code shared by the Lookalike services: wire contracts, errors, the index layout, the launcher."""
