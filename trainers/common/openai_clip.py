"""The one import of OpenAI's ``clip`` package: import it from here.

``clip`` (openai-clip) imports ``pkg_resources`` at import time, and setuptools
answers with a deprecation warning on every command. That warning, and only that
one, is silenced here, at the import that causes it; once ``clip`` is imported, later
``import clip`` statements reuse the module and warn no more.
"""
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
    import clip
    import clip.model
    import clip.simple_tokenizer

__all__ = ["clip"]
