from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform

__all__ = ["build_transform", "AVAI_CHOICES", "INTERPOLATION_MODES"]
