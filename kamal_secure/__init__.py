"""kamal-secure: a security gate in front of Kamal."""

__version__ = "0.1.0"
