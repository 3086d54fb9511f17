from __future__ import annotations

import pytest

from mlpipeline.features.transform import FeatureSpec
from tests.unit.test_features import SPEC, _booster_on_frame


def test_a_booster_that_does_not_match_the_feature_spec_is_refused_at_load():
    from mlpipeline.features import transform as features
    from mlpipeline.serve.serving import check_encoding

    booster = _booster_on_frame(SPEC)
    check_encoding(booster, SPEC, features)  # the spec it was trained with
    reordered = FeatureSpec(SPEC.inputs, SPEC.categories, SPEC.derived, output=SPEC.features[::-1])
    other_levels = FeatureSpec(SPEC.inputs, {"cut": ["Good", "Ideal", "Premium"]}, SPEC.derived)
    for spec in (reordered, other_levels):
        with pytest.raises(ValueError, match="do not match the feature spec"):
            check_encoding(booster, spec, features)


def test_the_served_model_imports_the_featurization_under_its_shipped_name():
    import ast

    from mlpipeline.data.names import SHIPPED_FEATURES
    from mlpipeline.serve import serving

    tree = ast.parse(open(serving.__file__).read())  # noqa: SIM115 - the file, not the module
    names = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }
    assert names["FEATURES_MODULE"] == SHIPPED_FEATURES
