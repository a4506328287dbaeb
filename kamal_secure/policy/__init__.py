"""The project's policy file, waivers and baseline."""
