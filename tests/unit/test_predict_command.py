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


def test_scoring_asks_the_model_to_explain_only_when_told():
    import pandas as pd

    from mlpipeline.commands.predict import score

    class Model:
        def __init__(self):
            self.asked = []

        def predict(self, rows, params=None):
            self.asked.append(params)
            return pd.DataFrame({"prediction": rows["x"] * 2.0})

    model, rows = Model(), pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert score(model, rows, chunk=2)["prediction"].tolist() == [2.0, 4.0, 6.0]
    assert model.asked == [None, None]  # two chunks, plain
    score(model, rows, chunk=5, explain=True)
    assert model.asked[-1] == {"explain": True}
