"""Procedural synthetic videos with exact ground-truth point tracks (TAP-Vid layout).

No real tracking data set can be downloaded here, so tracking quality is measured on videos whose
ground truth is known exactly. Each video is a stack of layers, back to front:

  * layer 0, the background: a photo from `skimage.data` on a canvas larger than the frame, seen
    through a smooth camera pan / zoom / roll (a similarity warp of the canvas);
  * layers 1..L, the foreground objects: photo textures cut out by a soft ellipse or a soft
    polygon, each moving with a smooth similarity motion (translation, rotation and scale are
    sinusoids / low-order polynomials of t) on top of the camera motion. Some cross the frame,
    some leave it and come back; they occlude each other and the background.

The depth order is fixed: a higher layer index is always in front. Layer l maps its own pixel
coordinates p to frame pixels with the 2x3 affine `affines[l, t]`: q = A @ [p, 1]. Each frame is
rendered by inverse-warping every layer with cv2.warpAffine (bilinear, WARP_INVERSE_MAP with the
exact float64 inverse) and compositing back to front with premultiplied alpha.

Conventions:
  * Pixels: integer coordinates are pixel centres, x is the column and y the row, the frame
    spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. This is cv2.warpAffine's own convention, so the
    forward affine of a layer point is exactly where its colour lands (float-exact with the
    installed OpenCV 5 on float32 images; older builds quantise sub-pixel positions to 1/32 px).
  * Tracks `target_points` are (x, y) px [N, T, 2]; queries are (t, y, x) [Q, 3], as in TAP-Vid.
  * A track is occluded at frame t iff its point is outside [0, W-1] x [0, H-1] (the hull of
    pixel centres, where bilinear sampling is defined), or its own layer's alpha there is < 0.5,
    or some layer in front has alpha > 0.5 there. Alphas are sampled exactly (float64 bilinear
    in each layer's own coordinates), not from the rendered 8-bit video.
  * Track points are only sampled where their own layer is solid (alpha >= SOLID_ALPHA in
    `renderer`), and every track is visible in at least one frame.

Everything random comes from `np.random.default_rng(seed)`, so a video is bit-for-bit
reproducible from its seed (on a given OpenCV build).

Modules: `layers` (textures, masks, camera and object motion), `renderer` (`make_video`: rendering
and ground truth), `suites` (named sets of videos), `io` (.npz files, previews, the synth command).
"""

from omnimotion_jax.data.synthetic.io import (load_video_npz, preview_frames, save_video_npz,
                                              synth_command)
from omnimotion_jax.data.synthetic.renderer import make_video
from omnimotion_jax.data.synthetic.suites import SUITES, VideoSpec, make_suite, suite_video
from omnimotion_jax.tapvid.queries import QUERY_STRIDE

__all__ = ['QUERY_STRIDE', 'SUITES', 'VideoSpec', 'load_video_npz', 'make_suite', 'make_video',
           'preview_frames', 'save_video_npz', 'suite_video', 'synth_command']
