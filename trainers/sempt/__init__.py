"""SemPT: the trainer (``trainer``) and the pieces only it and the description-based
baselines use, kept out of ``trainers/common``:

| module | what |
|---|---|
| ``attributes`` | attribute files (``attribute_data/*.json``): format, loading, class matching, validation |
| ``description_bank`` | description embeddings ``e_ck``, encoded once per backbone and cached on disk |
| ``fusion`` | visually guided weighting and the attribute-enhanced logits, exact and memory-bounded |
| ``trainer`` | the ``SemPT`` trainer |

Importing this package loads none of them (the attribute generator needs ``attributes`` only).
"""
