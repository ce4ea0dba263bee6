"""omnimotion_jax: OmniMotion ("Tracking Everything Everywhere All at Once") in JAX/Flax.

Pipeline, one module per stage:
  video.py -> flow.py / filtering.py / pairs.py -> store.py        (video -> correspondences)
  gabor.py, coupling.py, canonical.py, model.py, geometry.py, render.py   (model)
  losses.py, sampler.py, train.py                                   (test-time optimisation)
  track.py                                                          (tracking)
  tapvid/ (metrics, queries, TFDS builders), synthetic.py, viz.py   (evaluation, visualisation)
"""

__version__ = '0.1.0'
