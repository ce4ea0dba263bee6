"""User-facing errors.

Anything the user can fix (a bad path, an unreadable video, an inconsistent config) raises
`UserInputError` with a one-line message that names the file or field, what is wrong, and what to
do. The CLI prints that line and exits with status 2, without a traceback.
"""


class UserInputError(ValueError):
  """A mistake in the user's input: names the file or field, the problem and the fix."""
