"""Install the SemPT framework's engine (``dassl``) and its dependencies.

Only the ``dassl`` package is installed: ``datasets/``, ``trainers/`` and ``tools/``
are used from the repository root, as in CoOp, and are deliberately *not* installed
as top-level packages (a top-level ``datasets`` would shadow HuggingFace Datasets).
"""
from setuptools import find_packages, setup

setup(
    name="sempt",
    version="0.1.0",
    description="SemPT: semantic prompt tuning for CLIP, with CoOp/CoCoOp/KgCoOp baselines "
    "on a small Dassl-compatible engine",
    python_requires=">=3.9",
    packages=find_packages(include=["dassl", "dassl.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "openai-clip>=1.0",
        # openai-clip imports pkg_resources, removed from setuptools 81.
        "setuptools<81",
        "yacs>=0.1.8",
        "tabulate",
        "tqdm",
        "numpy",
        "pillow",
        "openai>=1.0",
        "gdown",
        # python -m tools.data download: resumable HTTP downloads (Range requests).
        "requests",
        # The StanfordCars and Flowers102 readers read MATLAB annotation files when a split file is missing.
        "scipy",
        # scripts/lib.sh reads a config's OPTIM.MAX_EPOCH with it (yacs needs it too).
        "PyYAML",
        # python -m tools.benchmark: SLURM job arrays, and the report's figures.
        "submitit>=1.4",
        "matplotlib>=3.5",
        # MODEL.BACKBONE.NAME open_clip:<model> (trainers/common/open_clip_backbone.py): open_clip's
        # factory and tokenizers (timm comes with it for EVA02 and SigLIP's vision towers), and
        # HuggingFace's tokenizers, which SigLIP and SigLIP 2 use.
        "open_clip_torch>=3.0",
        "timm",
        "transformers",
        "tokenizers",
        # Read offline (HF_HUB_OFFLINE) without network time-outs: open_clip_backbone sets its flag.
        "huggingface_hub",
    ],
    extras_require={"test": ["pytest"]},
)
