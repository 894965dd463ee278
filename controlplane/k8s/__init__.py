"""Kubernetes helpers: the client connection, error wording, and the local test bed."""
