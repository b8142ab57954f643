"""The Lambda container image outside AWS: its platform, a Docker engine of our own, a stand-in base, the build."""
