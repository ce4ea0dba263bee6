"""Checkpoints of the train state with orbax, plus the resolved config saved beside them.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so an interrupted
save never replaces a good checkpoint with a broken one.
"""

import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from omnimotion_jax.errors import UserInputError

CONFIG_FILE = 'config.json'


def manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(Path(directory).absolute(),
                               options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                                    create=True))


def save(mngr: ocp.CheckpointManager, step: int, state, wait: bool = False) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  if wait:
    mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, template):
  """Restores the newest checkpoint into the structure of `template`, or returns None."""
  step = mngr.latest_step()
  if step is None:
    return None
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError) as e:
    raise UserInputError(
        f'{mngr.directory}/{step}: checkpoint does not match this config\'s model ({e}). Train '
        'with the config it was made with, or use a new --workdir.') from e


def save_config(directory: Path, config: ml_collections.ConfigDict) -> None:
  path = Path(directory) / CONFIG_FILE
  tmp = path.with_suffix('.tmp')
  tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str))
  tmp.replace(path)


def load_saved_config(directory: Path) -> dict | None:
  path = Path(directory) / CONFIG_FILE
  return json.loads(path.read_text()) if path.exists() else None
