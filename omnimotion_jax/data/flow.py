"""Correspondence backends: where the dense flow f_ij of an ordered frame pair comes from.

All backends share one interface (`FlowBackend`): `flow(i, j)` returns float32 [H, W, 2] (dx, dy)
px such that pixel p of frame i corresponds to p + f_ij(p) in frame j (integer coordinates are
pixel centres, x is the column), at the size of the processed frames. i and j index the processed
frames (after stride / max_frames), 0..N-1. Choose one with `make_backend(name, ...)`:

  * 'dis': OpenCV's DIS optical flow (Kroeger et al. 2016) on greyscale frames, CPU only. Preset
    chosen by measurement (benchmarks/dis_epe.py: EPE on the Middlebury motorcycle stereo pair,
    ultrafast 3.77 px, fast 3.23 px, medium 2.63 px), so 'medium' is the default.
  * 'deepflow': OpenCV-contrib's DeepFlow (Weinzaepfel et al. 2013) on greyscale frames: ~25x
    the cost of DIS medium, and the most accurate OpenCV flow on real video
    (benchmarks/flow_backends.py: half the drift of chained DIS on TAP-Vid-DAVIS).
  * 'raft': RAFT (Teed & Deng 2020) in JAX from converted official weights (data.raft_weights,
    `omnimotion-jax convert-weights`), run as the reference's exhaustive_raft.py runs it (20
    iterations, InputPadder, optional warm start); pairs are computed in batches on the
    accelerator (nets/raft_infer.py). Nothing is downloaded.
  * 'files': precomputed flows, one .npy per ordered pair, float [H, W, 2] (dx, dy) px, named by
    `pattern` (default DEFAULT_FLOW_PATTERN = '{i:05d}_{j:05d}.npy') where i and j are *input*
    frame indices (before stride), e.g. 00000_00007.npy. Flows may be at the input size or at the
    processed size; input-size flows are resized (vectors scaled).
  * 'omnimotion_dir': a sequence folder in the reference's layout: color/ frames (jpg or png),
    raft_exhaustive/{name_i}_{name_j}.npy flows and, if present, raft_masks/{name_i}_{name_j}.png
    (R = cycle-consistent, G = occluded-but-reliable; 0/255). Names are the frame file names
    with their extension (00000.jpg_00007.jpg.npy), as the reference writes them; names built
    from stems (00000_00007.npy) are accepted too. When raft_masks/ exists, `masks(i, j)` returns
    those final masks and the pipeline stores them as they are (the reference's flows there are
    already chained, so re-filtering them would be wrong); count_maps/ and flow_stats.json are
    not read: counts are recomputed for the stored pairs (equal to the reference's when every
    pair is stored).
"""

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from omnimotion_jax.data import video as video_lib
from omnimotion_jax.errors import UserInputError

BACKENDS = ('dis', 'deepflow', 'raft', 'files', 'omnimotion_dir')
# Backends that compute flow from the frames (the others read it from files).
COMPUTED_BACKENDS = ('dis', 'deepflow')
DIS_PRESETS = {
    'ultrafast': cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    'fast': cv2.DISOPTICAL_FLOW_PRESET_FAST,
    'medium': cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
DEFAULT_FLOW_PATTERN = '{i:05d}_{j:05d}.npy'
# Reference sequence-folder layout.
COLOR_DIR = 'color'
FLOW_DIR = 'raft_exhaustive'
MASK_DIR = 'raft_masks'
MASK_ON = 128  # A mask PNG channel counts as set above this (the reference writes 0 / 255).


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes a flow [H, W, 2] (dx, dy) px to size = (H', W') and rescales its vectors.

  With pixel centres at integers, x' = (x + 0.5) W'/W - 0.5, so displacements scale by W'/W.
  """
  height, width = flow.shape[:2]
  new_h, new_w = size
  if (height, width) == (new_h, new_w):
    return flow.astype(np.float32, copy=False)
  shrink = new_h * new_w < height * width
  out = cv2.resize(flow.astype(np.float32), (new_w, new_h),
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
  out[..., 0] *= new_w / width
  out[..., 1] *= new_h / height
  return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of a bool [H, W] mask to size = (H', W')."""
  if mask.shape == tuple(size):
    return mask
  return cv2.resize(mask.astype(np.uint8), (size[1], size[0]),
                    interpolation=cv2.INTER_NEAREST).astype(bool)


@dataclasses.dataclass(frozen=True)
class RaftOptions:
  """The 'raft' backend's options (config.data.raft_*)."""
  weights: str | None = None  # Converted weights (.npz).
  model: str = 'raft'  # 'raft' | 'raft_small', the weights file's kind.
  iters: int = 20  # Refinement iterations per pair.
  warm_start: bool = False  # Start each pair from the previous pair of its sweep.
  chunk: int = 8  # Pairs per compiled call.


class FlowBackend:
  """Interface: dense flow between processed frames i and j.

  Batched backends also override `flows` (many pairs at once), and may reorder the work
  (`schedule`) and save state beside cached flows (`cache_arrays` / `restore`), which
  preprocess.compute_flows uses.

  Attributes:
    name: backend name (BACKENDS).
    size: (H, W) px of the processed frames; every returned array has it.
    cacheable: whether flows are expensive enough to cache on disk during preprocessing.
    has_masks: whether `masks` returns precomputed final masks.
  """
  name = ''
  cacheable = False
  has_masks = False

  def __init__(self, size: tuple[int, int]):
    self.size = (int(size[0]), int(size[1]))

  def flow(self, i: int, j: int) -> np.ndarray:
    """float32 [H, W, 2] (dx, dy) px from processed frame i to processed frame j."""
    raise NotImplementedError

  def flows(self, pairs: np.ndarray, progress=None) -> np.ndarray:
    """float32 [P, H, W, 2] flows of pairs int [P, 2] (here one `flow` at a time); `progress` is
    called with the number of pairs done."""
    out = np.empty((len(pairs),) + self.size + (2,), np.float32)
    for k, (i, j) in enumerate(pairs):
      out[k] = self.flow(int(i), int(j))
      if progress is not None:
        progress(1)
    return out

  def schedule(self, pairs: np.ndarray) -> np.ndarray:
    """The order (rows of `pairs`) to compute a plan's pairs in; `flows` then gets them in it."""
    return np.arange(len(pairs))

  def cache_arrays(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Extra arrays to cache beside the flows of `pairs` (none here)."""
    return {}

  def restore(self, pairs: np.ndarray, arrays: dict[str, np.ndarray]) -> bool:
    """Takes back `cache_arrays` when `pairs` come from the cache; False if they are unusable."""
    return True

  def masks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Precomputed (cycle, occluded) bool [H, W] masks of pair (i, j), or None."""
    return None

  def fingerprint(self) -> str:
    """A string naming the backend and every option that changes its flows (cache key)."""
    return self.name


def pair_flow_fn(method: str, dis_preset: str = 'medium'):
  """fn(frame_a, frame_b) -> float32 [H, W, 2] (dx, dy) px from a to b, for a computed method.

  Args:
    method: a COMPUTED_BACKENDS name ('dis' or 'deepflow').
    dis_preset: 'dis': a DIS_PRESETS key.

  Frames are uint8 [H, W, 3] RGB or [H, W] grey; both methods run on greyscale.
  """
  if method == 'dis':
    if dis_preset not in DIS_PRESETS:
      raise UserInputError(f'data.dis_preset={dis_preset!r}: unknown DIS preset; use one of '
                           f'{tuple(DIS_PRESETS)}.')
    algo = cv2.DISOpticalFlow_create(DIS_PRESETS[dis_preset])
  elif method == 'deepflow':
    if not hasattr(cv2, 'optflow'):
      raise UserInputError('data.flow_backend="deepflow" needs OpenCV\'s contrib modules: '
                           'pip install opencv-contrib-python-headless (instead of '
                           'opencv-python-headless).')
    algo = cv2.optflow.createOptFlow_DeepFlow()
  else:
    raise UserInputError(f'flow method {method!r}: unknown; use one of {COMPUTED_BACKENDS}.')

  def grey(frame: np.ndarray) -> np.ndarray:
    frame = np.ascontiguousarray(frame, np.uint8)
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)

  def fn(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    return algo.calc(grey(frame_a), grey(frame_b), None).astype(np.float32, copy=False)

  return fn


class ComputedBackend(FlowBackend):
  """Flow computed from the processed frames by an OpenCV method ('dis' or 'deepflow')."""
  cacheable = True

  def __init__(self, frames: np.ndarray, method: str, dis_preset: str = 'medium'):
    """frames: uint8 [N, H, W, 3] RGB (processed); method: COMPUTED_BACKENDS."""
    self._fn = pair_flow_fn(method, dis_preset)
    super().__init__(frames.shape[1:3])
    self.name = method
    self.preset = dis_preset
    self._grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])

  def flow(self, i: int, j: int) -> np.ndarray:
    return self._fn(self._grey[i], self._grey[j])

  def fingerprint(self) -> str:
    option = f':{self.preset}' if self.name == 'dis' else ''
    return f'{self.name}{option}:opencv-{cv2.__version__}'


def _load_flow_file(path: Path, size: tuple[int, int], input_size: tuple[int, int],
                    hint: str) -> np.ndarray:
  """Loads one .npy flow, validates it, and resizes input-size flows to `size`."""
  if not path.is_file():
    raise UserInputError(f'{path}: flow file not found; {hint}.')
  try:
    flow = np.load(path, allow_pickle=False)
  except Exception as error:
    raise UserInputError(f'{path}: not a readable .npy array ({type(error).__name__}); '
                         're-save it with numpy.save.') from None
  if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] not in (tuple(size),
                                                                   tuple(input_size)):
    raise UserInputError(
        f'{path}: flow has shape {flow.shape}, expected [H, W, 2] (dx, dy) with (H, W) = '
        f'{tuple(size)} (processed frames) or {tuple(input_size)} (input frames).')
  if not np.issubdtype(flow.dtype, np.floating):
    raise UserInputError(f'{path}: flow dtype is {flow.dtype}; save float16/32/64 (dx, dy) px.')
  if not np.all(np.isfinite(flow)):
    raise UserInputError(f'{path}: flow contains NaN or inf; replace them (e.g. with 0) before '
                         'preprocessing.')
  return resize_flow(flow, size)


class FilesBackend(FlowBackend):
  """Precomputed flows in a folder, one .npy per ordered pair (module docstring)."""
  name = 'files'

  def __init__(self, flow_dir: str | os.PathLike, size: tuple[int, int],
               frame_indices: np.ndarray, input_size: tuple[int, int] | None = None,
               pattern: str = DEFAULT_FLOW_PATTERN):
    """
    Args:
      flow_dir: folder of flow files.
      size: (H, W) of the processed frames.
      frame_indices: int [N], input frame index of each processed frame (names use these).
      input_size: (H, W) of the input frames (flows may also have this size); default = size.
      pattern: file name pattern with fields {i} and {j}.
    """
    super().__init__(size)
    self.flow_dir = Path(flow_dir)
    if not self.flow_dir.is_dir():
      raise UserInputError(f'{self.flow_dir}: flow folder not found; pass the folder holding '
                           f'one {pattern} file per frame pair.')
    try:
      pattern.format(i=0, j=1)
    except (KeyError, IndexError, ValueError) as error:
      raise UserInputError(f'flow file pattern {pattern!r} is invalid ({error}); use fields '
                           '{i} and {j}, e.g. "{i:05d}_{j:05d}.npy".') from None
    self.pattern = pattern
    self.frame_indices = np.asarray(frame_indices)
    self.input_size = tuple(input_size or size)

  def path(self, i: int, j: int) -> Path:
    return self.flow_dir / self.pattern.format(i=int(self.frame_indices[i]),
                                               j=int(self.frame_indices[j]))

  def flow(self, i: int, j: int) -> np.ndarray:
    hint = (f'the files backend needs one {self.pattern} file per planned pair (input frame '
            'indices); add it or choose another pair plan / backend')
    return _load_flow_file(self.path(i, j), self.size, self.input_size, hint)

  def fingerprint(self) -> str:
    return f'files:{self.flow_dir.resolve()}:{self.pattern}'


class OmnimotionDirBackend(FlowBackend):
  """A sequence folder in the reference's layout (module docstring)."""
  name = 'omnimotion_dir'

  def __init__(self, seq_dir: str | os.PathLike, size: tuple[int, int], frame_names: list[str],
               input_size: tuple[int, int] | None = None):
    """
    Args:
      seq_dir: the sequence folder (holding color/ and raft_exhaustive/).
      size: (H, W) of the processed frames.
      frame_names: file name (with extension) in color/ of each processed frame.
      input_size: (H, W) of the color/ frames; default = size.
    """
    super().__init__(size)
    self.seq_dir = Path(seq_dir)
    check_omnimotion_dir(self.seq_dir)
    self.frame_names = list(frame_names)
    self.input_size = tuple(input_size or size)
    self.has_masks = (self.seq_dir / MASK_DIR).is_dir()

  def _find(self, folder: str, i: int, j: int, suffix: str) -> Path:
    a, b = self.frame_names[i], self.frame_names[j]
    candidates = [self.seq_dir / folder / f'{a}_{b}{suffix}',
                  self.seq_dir / folder / f'{Path(a).stem}_{Path(b).stem}{suffix}']
    for path in candidates:
      if path.is_file():
        return path
    raise UserInputError(f'{candidates[0]}: missing (pair {a} -> {b}); run the reference '
                         'preprocessing for every pair, or choose a pair plan / backend that '
                         'does not need it.')

  def flow(self, i: int, j: int) -> np.ndarray:
    path = self._find(FLOW_DIR, i, j, '.npy')
    return _load_flow_file(path, self.size, self.input_size, 'see the reference layout')

  def masks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not self.has_masks:
      return None
    path = self._find(MASK_DIR, i, j, '.png')
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
      raise UserInputError(f'{path}: cannot read this mask PNG; re-run the reference filtering.')
    if image.shape[:2] not in (self.size, self.input_size):
      raise UserInputError(f'{path}: mask is {image.shape[1]}x{image.shape[0]}, expected the '
                           f'frame size {self.input_size[1]}x{self.input_size[0]}.')
    # OpenCV loads BGR: R (cycle) is channel 2, G (occluded) channel 1.
    cycle = resize_mask(image[..., 2] > MASK_ON, self.size)
    occluded = resize_mask(image[..., 1] > MASK_ON, self.size)
    return cycle, occluded & ~cycle

  def fingerprint(self) -> str:
    return f'omnimotion_dir:{self.seq_dir.resolve()}'


def check_omnimotion_dir(seq_dir: Path) -> None:
  """Raises UserInputError unless seq_dir has the reference's color/ and raft_exhaustive/."""
  for sub in (COLOR_DIR, FLOW_DIR):
    if not (seq_dir / sub).is_dir():
      raise UserInputError(f'{seq_dir}: not an OmniMotion sequence folder (no {sub}/); it needs '
                           f'{COLOR_DIR}/ frames and {FLOW_DIR}/ flows, or use data.flow_backend '
                           '= "dis" with a video.')


def omnimotion_frame_names(seq_dir: str | os.PathLike) -> list[str]:
  """Sorted frame file names (jpg/jpeg/png) of a reference sequence folder's color/."""
  return [p.name for p in video_lib.list_frame_files(Path(seq_dir) / COLOR_DIR)]


def make_backend(name: str, frames: np.ndarray, *, dis_preset: str = 'medium',
                 flow_dir: str | os.PathLike | None = None, pattern: str = DEFAULT_FLOW_PATTERN,
                 frame_indices: np.ndarray | None = None,
                 input_size: tuple[int, int] | None = None,
                 seq_dir: str | os.PathLike | None = None,
                 raft: RaftOptions | None = None) -> FlowBackend:
  """Builds a correspondence backend for processed frames uint8 [N, H, W, 3].

  Args:
    name: a BACKENDS name.
    frames: the processed frames (DIS / DeepFlow compute on them; the others take their size).
    dis_preset: 'dis': a DIS_PRESETS key.
    flow_dir, pattern: 'files': the folder and the file-name pattern ({i}, {j}).
    frame_indices: 'files' / 'omnimotion_dir': input index of each processed frame (default
      0..N-1).
    input_size: 'files' / 'omnimotion_dir': (H, W) of the input frames (default: frames' size).
    seq_dir: 'omnimotion_dir': the sequence folder.
    raft: 'raft': its options (weights file, model, iterations, warm start, chunk).

  Returns:
    A FlowBackend.
  """
  size = frames.shape[1:3]
  indices = np.arange(len(frames)) if frame_indices is None else np.asarray(frame_indices)
  if name in COMPUTED_BACKENDS:
    return ComputedBackend(frames, name, dis_preset)
  if name == 'raft':
    from omnimotion_jax.data.nets import raft_infer  # pylint: disable=g-import-not-at-top
    return raft_infer.RaftBackend(frames, raft or RaftOptions())
  if name == 'files':
    if flow_dir is None:
      raise UserInputError('data.flow_backend="files" needs a flow folder (flow_dir) holding '
                           f'one {pattern} file per frame pair.')
    return FilesBackend(flow_dir, size, indices, input_size, pattern)
  if name == 'omnimotion_dir':
    if seq_dir is None:
      raise UserInputError('data.flow_backend="omnimotion_dir" needs the sequence folder as '
                           'the input path.')
    check_omnimotion_dir(Path(seq_dir))
    names = omnimotion_frame_names(seq_dir)
    return OmnimotionDirBackend(seq_dir, size, [names[k] for k in indices], input_size)
  raise UserInputError(f'data.flow_backend={name!r}: unknown backend; use one of {BACKENDS}.')
