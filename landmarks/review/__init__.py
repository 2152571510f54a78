"""Review stage: photos whose label the data doubts, a person's verdicts on them, and the page.

Takes the clean photos (``clean/``) and the dedup keepers (``dedup/kept.jsonl``, or the
reviewed ``review/kept.jsonl`` when there is one). Leaves ``suspects/suspects.json`` (every
photo ranked by out-of-fold doubt in its label), ``review/decisions.json`` (keep / remove /
relabel verdicts keyed by pixel hash, written atomically on every change),
``review/kept.jsonl`` (the keepers with every decision applied, which the split reads instead)
and ``review/applied.json`` (what each decision did). Raw and clean files are never deleted.

Modules, each imported by name (``from landmarks.review import decisions``):
:mod:`~landmarks.review.suspects` (out-of-fold scoring) with its fallback features
:mod:`~landmarks.review.photo_features`, :mod:`~landmarks.review.decisions` (the verdicts and
applying them) and :mod:`~landmarks.review.page` (the local review web page).
"""
