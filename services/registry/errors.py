"""Registry errors. Every message is one line that says what is wrong and what to do."""


class RegistryError(Exception):
    """Anything the registry refuses to do."""


class ModelRefError(RegistryError):
    """A model reference (NAME@ALIAS or NAME@VERSION) that does not resolve."""


class VerificationError(RegistryError):
    """A model that fails verification: it must not be served."""
