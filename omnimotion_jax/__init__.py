"""omnimotion_jax: OmniMotion ("Tracking Everything Everywhere All at Once") in JAX/Flax.

Folders in pipeline order: data/ (video -> correspondences) -> model/ -> train/ (test-time
optimisation) -> track.py -> tapvid/ and evaluation/ (TAP-Vid metrics, suites) -> viz/; the
run folder's files belong to workdir.py and the stages to pipeline.py.
"""

__version__ = '0.2.0'
