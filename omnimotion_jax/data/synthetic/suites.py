"""Named suites of synthetic videos (fixed seeds and settings), e.g. 'synthetic-v1'."""

import dataclasses
from collections.abc import Iterator

from omnimotion_jax.data.synthetic.renderer import DEFAULT_NUM_TRACKS
from omnimotion_jax.data.synthetic.renderer import make_video
from omnimotion_jax.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """Arguments of one `make_video` call, with a short description."""
  name: str
  seed: int
  num_frames: int
  height: int
  width: int
  num_layers: int | None = None
  num_tracks: int = DEFAULT_NUM_TRACKS
  motion_scale: float = 1.0
  camera_scale: float = 1.0
  paths: tuple[str, ...] | None = None

  def kwargs(self) -> dict:
    """Keyword arguments for `make_video`."""
    out = dataclasses.asdict(self)
    del out['name']
    return out


SUITES: dict[str, list[VideoSpec]] = {
    # The reference suite: 8 videos, 24-48 frames, 128-256 px, from camera-only-plus-one-object
    # to five objects, slow to fast, with crossings, exits and re-entries.
    'synthetic-v1': [
        VideoSpec('pan-one-object-slow', 1001, 32, 128, 128, num_layers=1, motion_scale=0.6,
                  camera_scale=1.0, paths=('drift',)),
        VideoSpec('pan-zoom-one-object-fast', 1002, 24, 160, 160, num_layers=1, motion_scale=2.0,
                  camera_scale=1.5, paths=('cross',)),
        VideoSpec('three-crossing', 1003, 40, 192, 192, num_layers=3, motion_scale=1.0,
                  camera_scale=0.5, paths=('cross', 'cross', 'drift')),
        VideoSpec('static-camera-two-objects', 1004, 32, 144, 192, num_layers=2,
                  motion_scale=1.0, camera_scale=0.0, paths=('drift', 'exit_return')),
        VideoSpec('five-objects', 1005, 48, 256, 256, num_layers=5, motion_scale=1.0,
                  camera_scale=1.0),
        VideoSpec('exit-reenter', 1006, 48, 128, 160, num_layers=3, motion_scale=1.0,
                  camera_scale=0.8, paths=('exit_return', 'exit_return', 'drift')),
        VideoSpec('fast-clutter', 1007, 24, 128, 192, num_layers=4, motion_scale=2.0,
                  camera_scale=1.0),
        VideoSpec('slow-zoom', 1008, 36, 176, 176, num_layers=2, motion_scale=0.5,
                  camera_scale=1.5, paths=('drift', 'drift')),
    ],
    # CPU-friendly: 4 videos of 24 frames, 96-128 px.
    'synthetic-mini': [
        VideoSpec('mini-pan-one-object', 2001, 24, 96, 96, num_layers=1, camera_scale=1.0,
                  paths=('drift',)),
        VideoSpec('mini-exit-reenter', 2002, 24, 128, 128, num_layers=2, camera_scale=0.7,
                  paths=('drift', 'exit_return')),
        VideoSpec('mini-three-objects', 2003, 24, 96, 128, num_layers=3, motion_scale=1.5,
                  camera_scale=1.0),
        VideoSpec('mini-static-crossing', 2004, 24, 128, 96, num_layers=2, camera_scale=0.0,
                  paths=('cross', 'cross')),
    ],
}


def _suite_specs(name: str) -> list[VideoSpec]:
  if name not in SUITES:
    raise UserInputError(f'unknown synthetic suite {name!r}; choose one of {sorted(SUITES)}')
  return SUITES[name]


def make_suite(name: str) -> Iterator[dict]:
  """Yields the videos of suite `name` in order (each as returned by `make_video`).

  A generator, so only one video is in memory at a time; use list(make_suite(name)) for all.
  Each sample also has 'name' (the spec's name, a str).
  """
  for index in range(len(_suite_specs(name))):
    yield suite_video(name, index)


def suite_video(name: str, index: int) -> dict:
  """Video `index` of suite `name` (see `make_video`), with its spec's 'name' added."""
  specs = _suite_specs(name)
  if not 0 <= index < len(specs):
    raise UserInputError(f'suite {name!r} has videos 0..{len(specs) - 1}, not {index}; '
                         'pass an index in that range')
  spec = specs[index]
  sample = make_video(**spec.kwargs())
  sample['name'] = spec.name
  return sample

