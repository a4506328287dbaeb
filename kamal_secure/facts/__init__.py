"""Local facts: the deploy key, the installed Kamal's version."""
