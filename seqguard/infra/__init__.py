"""Infrastructure for running seqguard in the cloud (see `seqguard.infra.deploy`)."""
