"""``one_line``: the single line an error is reported with."""

from __future__ import annotations

from trainer.errors import one_line


def test_first_non_blank_line_of_a_message_or_an_exception() -> None:
    assert one_line("\n  first\nsecond") == "first"
    assert one_line(OSError("disk full\ndetails")) == "disk full"
    assert one_line("") == ""


def test_an_exception_without_a_message_gives_its_type() -> None:
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(RuntimeError("  \n ")) == "RuntimeError"


def test_limit_cuts_the_line() -> None:
    assert one_line("x" * 300 + "\nmore", 200) == "x" * 200
    assert one_line(ValueError(), 5) == "Value"
    assert len(one_line("y" * 300)) == 300  # no limit unless asked
