"""Release manifests: what each environment runs, recorded when it changes, and compared."""
