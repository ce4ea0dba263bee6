"""Test configuration: CPU only, small deterministic settings."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
