"""Reusable method parts: what more than one method uses, or what a method is made of and
another may reuse. Below the method files (``trainers/<method>.py``), above the CLIP pieces
(``trainers/common/``); a part imports ``dassl``, ``trainers.common``, ``trainers.config`` and
other parts, never a method module.

| module | what | used by |
|---|---|---|
| ``vl_prompts`` | independent deep prompts in both towers (``VLPromptLearner``), upstream key translation | IVLP, PromptSRC, SemPT (promptsrc branch) |
| ``coupled_prompts`` | MaPLe's coupled prompts (``MultiModalPromptLearner``) | MaPLe, SemPT (maple branch) |
| ``self_regulation`` | PromptSRC's regularisers and Gaussian prompt aggregation (``GPATrainerMixin``) | PromptSRC, SemPT (promptsrc branch) |
| ``knowledge_guidance`` | KgCoOp's term towards hand-crafted template features | KgCoOp, TCP, SemPT (``KG_WEIGHT``) |
| ``class_aware_tokens`` | TCP's class-aware tokens (``TCPPromptLearner``) and its templates | TCP |
| ``attributes`` | attribute files (``attribute_data/*.json``): format, loading, class matching, validation | SemPT, DCLIP, CuPL, tools.generate_attributes |
| ``description_bank`` | description embeddings ``e_ck``, encoded once per backbone and cached on disk | SemPT, DCLIP, CuPL |
| ``description_classifier`` | zero-shot classifiers over descriptions (``DescriptionClassifier``) | DCLIP, CuPL |
| ``fusion`` | visually guided weighting and the attribute-enhanced logits, exact and memory-bounded | SemPT |

Importing this package loads none of them (the attribute generator needs ``attributes`` only).
"""
