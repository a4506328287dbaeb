"""Ways into kamal-secure: Kamal hook scripts and the Rails binstub."""
