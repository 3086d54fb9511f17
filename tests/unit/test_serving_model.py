from __future__ import annotations

import pytest

from stages.features import FeatureSpec
from tests.unit.test_features import SPEC, _booster_on_frame


def test_a_booster_that_does_not_match_the_feature_spec_is_refused_at_load():
    from stages.serving import check_encoding

    booster = _booster_on_frame(SPEC)
    check_encoding(booster, SPEC)  # the spec it was trained with
    reordered = FeatureSpec(SPEC.inputs, SPEC.categories, SPEC.derived, output=SPEC.features[::-1])
    other_levels = FeatureSpec(SPEC.inputs, {"cut": ["Good", "Ideal", "Premium"]}, SPEC.derived)
    for spec in (reordered, other_levels):
        with pytest.raises(ValueError, match="do not match the feature spec"):
            check_encoding(booster, spec)
