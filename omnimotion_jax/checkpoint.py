"""Orbax checkpoints of the train state, and restoring only the parameters for inference.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so an interrupted
save never replaces a good checkpoint with a broken one.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from omnimotion_jax.errors import UserInputError


def manager(directory: Path, max_to_keep: int | None = None) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(Path(directory).absolute(),
                               options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                                    create=True))


def save(mngr: ocp.CheckpointManager, step: int, state, wait: bool = False) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  if wait:
    mngr.wait_until_finished()


def _mismatch(mngr: ocp.CheckpointManager, step: int, error: Exception) -> UserInputError:
  return UserInputError(
      f'{mngr.directory}/{step}: checkpoint does not match this config\'s model ({error}). Use the '
      'config it was trained with, or a new --workdir.')


def restore_latest(mngr: ocp.CheckpointManager, template):
  """Restores the newest checkpoint into the structure of `template`, or returns None."""
  step = mngr.latest_step()
  if step is None:
    return None
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError) as e:
    raise _mismatch(mngr, step, e) from e


def restore_params(directory: Path, abstract_params) -> tuple[dict, int] | None:
  """(params, step) of the newest checkpoint in `directory`, or None if there is none.

  Reads the parameters alone (orbax partial restore): no optimiser state, so inference needs
  neither the optimiser nor its config. abstract_params: a tree of jax.ShapeDtypeStruct, e.g.
  `jax.eval_shape(init_params, ...)`.
  """
  if not Path(directory).is_dir():
    return None
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  item = {'params': jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_params)}
  with ocp.CheckpointManager(Path(directory).absolute()) as mngr:
    step = mngr.latest_step()
    if step is None:
      return None
    try:
      restored = mngr.restore(step, args=ocp.args.PyTreeRestore(
          item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True))
    except (ValueError, KeyError) as e:
      raise _mismatch(mngr, step, e) from e
  return restored['params'], step
