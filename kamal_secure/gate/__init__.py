"""The gate: what Kamal will run, decided before it runs."""
