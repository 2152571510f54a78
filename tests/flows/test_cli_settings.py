"""Settings from a deployment's parameters: a mistyped name is refused, never ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.deploy import RefreshParameters, RetrainParameters, data_overrides, retrain
from landmarks.errors import SettingsError


def test_unknown_deployment_parameters_are_refused():
    with pytest.raises(ValidationError, match="trainig"):
        RetrainParameters.model_validate({"trainig": {"epochs": 2}})
    with pytest.raises(ValidationError, match="epoch"):
        RetrainParameters.model_validate({"training": {"epoch": 2}})
    with pytest.raises(ValidationError, match="retrain_on_grow"):
        RefreshParameters.model_validate({"retrain_on_grow": 0.5})


def test_unknown_keys_in_a_deployments_overrides_name_the_closest_setting():
    params = RefreshParameters(overrides={"dedup": {"treshold": 4}})
    with pytest.raises(SettingsError) as err:
        data_overrides(params)
    assert str(err.value) == (
        "unknown setting 'dedup.treshold' in the deployment parameter 'overrides' "
        "(did you mean 'dedup.threshold'?)"
    )
    with pytest.raises(SettingsError, match="'trian' in the deployment parameter 'overrides'"):
        retrain.fn(RetrainParameters(overrides={"trian": {"epochs": 2}}))
