"""User-facing errors.

Anything the user can fix (a bad path, an unreadable video, an inconsistent config) raises
`UserInputError` with a one-line message that names the file or field, what is wrong, and what to
do. The CLI prints that line and exits with status 2, without a traceback.
"""


class UserInputError(ValueError):
  """A mistake in the user's input: names the file or field, the problem and the fix."""


class TrainingInterrupted(KeyboardInterrupt):
  """SIGINT/SIGTERM during training: the step reached is checkpointed and the run stops here.

  A KeyboardInterrupt, so that the stages after training (tracking, evaluation) never run on a
  partly trained model; re-running the same command resumes.
  """
