"""Upstream Dassl's default config (its ``dassl/config/defaults.py``), minus the DA/DG/SSL trainer nodes.

Project keys are added: ``DATASET.SUBSAMPLE_CLASSES`` (all|base|new, the base-to-new
protocol; pseudo_base|pseudo_new, the base labels split again for hyper-parameter
search), ``DATASET.CACHE_DIR`` (where split/few-shot caches go when the data folder is
read-only; empty = inside the dataset folder) and ``DATASET.VAL_FEWSHOT`` (False: keep the
whole val split instead of upstream's few-shot sample of it).
"""
from .node import CfgNode as CN

_C = CN()

# General
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""  # directory to resume from; empty = OUTPUT_DIR
_C.SEED = -1  # negative = no fixed seed
_C.USE_CUDA = True
_C.VERBOSE = True

# Input
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

# Dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False
# Project keys
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new | pseudo_base | pseudo_new (base labels split again)
_C.DATASET.CACHE_DIR = ""
_C.DATASET.VAL_FEWSHOT = True  # sample val to min(NUM_SHOTS, 4) per class as upstream; False: the whole val

# Dataloader
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# Model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
# Apply TRAINER.<X>.PREC on the CPU as on a GPU (fp16 weights, CPU autocast and grad scaler);
# False: the CPU runs fp32 whatever PREC (trainers/common/precision.py).
_C.MODEL.PREC_ON_CPU = False
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
# open_clip backbones (NAME open_clip:...): a pretrained tag, a checkpoint file, hf-hub:org/repo or
# "random"; unused for OpenAI CLIP names and checkpoint paths.
_C.MODEL.BACKBONE.PRETRAINED = ""
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

# Optimization
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
# Epsilon of the Adam family (adam, amsgrad, adamw, radam); torch's default. fp16 parameters
# need a larger one (TCP's README patches Dassl to 1e-3: with 1e-8 the loss becomes NaN).
_C.OPTIM.ADAM_EPS = 1e-8
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)  # -1 or 0 = MAX_EPOCH
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # <= 0 = no warm-up
_C.OPTIM.WARMUP_TYPE = "linear"  # constant | linear
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

# Training
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # keep every N-th epoch's checkpoint (0 = only the last)
_C.TRAIN.PRINT_FREQ = 10
_C.TRAIN.COUNT_ITER = "train_x"

# Test
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"  # test | val
_C.TEST.FINAL_MODEL = "last_step"  # last_step | best_val

# Trainer (method nodes are added by trainers.config.extend_cfg)
_C.TRAINER = CN()
_C.TRAINER.NAME = ""
