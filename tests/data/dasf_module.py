"""A backend module written for DASF's demessaging 0.6: it runs unchanged on both."""

from typing import List  # noqa: UP035  (as modules for Python 3.8 wrote it)

from deprogressapi import ProgressReport

from demessaging import configure, main

__all__ = ["Greeter", "Tally", "count_up", "hello"]


@configure(
    field_params={"repeat": {"ge": 1, "description": "How often, at least once."}},
    returns={"description": "The greetings."},
)
def hello(message: str, repeat: int = 1) -> List[str]:  # noqa: UP006
    """Repeat a message.

    Parameters
    ----------
    message
        What to say.
    repeat
        How often.
    """
    return [message] * repeat


def count_up(n: int, reporter: ProgressReport = ProgressReport(step_message="counting")) -> int:  # noqa: B008
    """Count to ``n``, reporting each step.

    Parameters
    ----------
    n
        Where to stop.
    """
    with reporter:
        for i in range(n):
            with reporter.create_subreport(step_message=f"step {i + 1}"):
                pass
    return n


@configure(methods=["greet"])
class Greeter:
    """Greets people.

    Parameters
    ----------
    greeting
        The word to greet with.
    """

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        """Greet someone.

        Parameters
        ----------
        name
            Who.
        """
        return f"{self.greeting}, {name}!"

    def shout(self, name: str) -> str:
        """Not served: ``methods`` leaves it out."""
        return self.greet(name).upper()


class Tally:
    """Counts from a start, which its constructor reports reaching.

    Parameters
    ----------
    start
        Where counting starts.
    """

    def __init__(
        self,
        start: int,
        reporter: ProgressReport = ProgressReport(step_message="setting up"),  # noqa: B008
    ) -> None:
        with reporter:
            for i in range(start):
                with reporter.create_subreport(step_message=f"start {i + 1}"):
                    pass
        self.start = start

    def add(self, n: int) -> int:
        """The start plus ``n``.

        Parameters
        ----------
        n
            How much to add.
        """
        return self.start + n


if __name__ == "__main__":
    main(messaging_config=dict(topic="dasf-module"))
