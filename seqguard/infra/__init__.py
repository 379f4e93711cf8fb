"""Infrastructure for running seqguard in the cloud (see `infra.deploy`)."""
