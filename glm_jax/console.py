"""Console output of a run: what process 0 prints (library code prints through here, never `cli`)."""


def say(message: str) -> None:
    """Prints `message` on process 0 only (every process of a multi-host run executes the same code)."""
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)
