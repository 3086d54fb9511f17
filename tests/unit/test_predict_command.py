from __future__ import annotations

from mlpipeline.commands.predict import unseen_values


def _in_set(column: str, severity: str, success: bool, count: int = 0) -> dict:
    return {
        "expectation": "expect_column_values_to_be_in_set",
        "kwargs": {"column": column},
        "severity": severity,
        "success": success,
        "result": {"unexpected_count": count, "unexpected_percent": 100.0 * count / 50},
    }


def test_new_values_of_an_open_ended_category_are_counted_and_a_closed_set_is_not():
    validation = {
        "results": [
            _in_set("city", "warning", success=False, count=2),
            _in_set("cut", "critical", success=False, count=1),  # refused: predict stops
            _in_set("maker", "warning", success=True),
        ]
    }
    assert unseen_values(validation) == [("city", 2, 4.0)]
