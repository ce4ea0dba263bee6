"""TAP-Vid evaluation, computed exactly as TapNet computes it (plus OmniMotion's TC)."""

from omnimotion_jax.tapvid.metrics import compute_tapvid_metrics
from omnimotion_jax.tapvid.metrics import convert_grid_coordinates
from omnimotion_jax.tapvid.metrics import temporal_coherence
from omnimotion_jax.tapvid.queries import sample_queries_first
from omnimotion_jax.tapvid.queries import sample_queries_strided

__all__ = [
    'compute_tapvid_metrics',
    'convert_grid_coordinates',
    'sample_queries_first',
    'sample_queries_strided',
    'temporal_coherence',
]
