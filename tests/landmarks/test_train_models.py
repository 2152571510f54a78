"""Model builders: every family builds offline (weights=None) and the original's columns map
onto the Sequential CNN."""

from pathlib import Path

import pytest

from landmarks.train.models import ModelSpec, make_model


@pytest.mark.parametrize("name", ["original_cnn", "vgg", "mobilenet_v2", "efficientnet_b0"])
def test_every_family_builds_without_downloading(name: str):
    spec = ModelSpec(
        name=name,
        image_size=32,
        conv_blocks=2,
        first_filters=8,
        dense_units=16,
        width_multiplier=0.35,
    )
    model = make_model(spec, 5)
    assert model.output_shape == (None, 5)
    assert model.input_shape == (None, 32, 32, 3)


def _layer_names(model) -> list[str]:
    return [layer.__class__.__name__ for layer in model.layers]


def test_original_table_columns_change_the_network():
    # try_1: 5 layers (2 blocks), Relu first, no dropout, "-" for the later activations.
    try_1 = make_model(
        ModelSpec(
            image_size=32, conv_blocks=2, activation="relu", dropout=0.0, later_activation="none"
        ),
        11,
    )
    assert _layer_names(try_1) == [
        "Rescaling",
        "Conv2D",
        "Activation",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    # try_9: 7 layers (3 blocks), LeakyReLU(0.01) everywhere, dropout 0.25.
    try_9 = make_model(ModelSpec(image_size=64, conv_blocks=3), 11)
    names = _layer_names(try_9)
    assert names.count("Conv2D") == 3 and names.count("LeakyReLU") == 4
    assert names.count("Dropout") == 4
    convs = [lay for lay in try_9.layers if lay.__class__.__name__ == "Conv2D"]
    assert [lay.filters for lay in convs] == [32, 64, 128]
    elu = make_model(
        ModelSpec(
            image_size=32,
            conv_blocks=1,
            activation="elu",
            pooling="avg",
            kernel_size=5,
            first_filters=4,
        ),
        3,
    )
    conv = next(lay for lay in elu.layers if lay.__class__.__name__ == "Conv2D")
    assert conv.kernel_size == (5, 5) and "AveragePooling2D" in _layer_names(elu)


def test_vgg_has_13_conv_layers_with_five_blocks():
    model = make_model(
        ModelSpec(
            name="vgg",
            image_size=32,
            conv_blocks=5,
            first_filters=4,
            dense_units=8,
            batch_norm=True,
        ),
        3,
    )
    assert _layer_names(model).count("Conv2D") == 13


def test_bad_specs_fail_with_a_clear_message(tmp_path: Path):
    with pytest.raises(ValueError, match="activation"):
        make_model(ModelSpec(activation="swish"), 3)
    with pytest.raises(ValueError, match="too small"):
        make_model(ModelSpec(image_size=16, conv_blocks=6), 3)
    with pytest.raises(ValueError, match="unknown model"):
        make_model(ModelSpec(name="resnet9000"), 3)
    with pytest.raises(FileNotFoundError, match="weights file"):
        make_model(
            ModelSpec(name="mobilenet_v2", image_size=32, weights=str(tmp_path / "missing.h5")), 3
        )


def test_local_backbone_weights_file_is_loaded(tmp_path: Path):
    import keras
    import numpy as np

    # A notop weights file as keras.applications writes it, made here instead of downloaded.
    source = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35
    )
    path = tmp_path / "mobilenet_v2_notop.weights.h5"
    source.save_weights(path)
    model = make_model(
        ModelSpec(
            name="mobilenet_v2",
            image_size=32,
            width_multiplier=0.35,
            weights=str(path),
            dense_units=0,
        ),
        4,
    )
    backbone = next(lay for lay in model.layers if lay.name.startswith("mobilenetv2"))
    assert not backbone.trainable  # a pretrained backbone is frozen by default
    np.testing.assert_allclose(backbone.get_weights()[0], source.get_weights()[0])
