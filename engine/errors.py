"""Errors an operator sees: each names what is wrong and, where it helps, what to do."""


class GovconError(Exception):
    """Base class; ``str(err)`` is the message shown to the operator."""

    exit_code = 1


class NotInitialised(GovconError):
    def __init__(self, message: str = "this store has no governance state yet: create it with `govcon db init`"
                 ) -> None:
        super().__init__(message)


class AlreadyInitialised(GovconError):
    pass


class PermissionDenied(GovconError):
    exit_code = 5


class NotFound(GovconError):
    pass


class InvalidInput(GovconError):
    exit_code = 2


class Conflict(GovconError):
    pass
