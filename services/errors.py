"""What a use case raises when its step must wait (the task adapters retry it with backoff)."""


class StepNotReady(Exception):
    """The step must wait (a refund racing another, issuance overloaded); try again later."""
