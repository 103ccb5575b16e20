"""Per-sample augmentation: the augmented image of item i in epoch e is a pure function of
(seed, e, i), whatever the loader's batch size, workers or anything else drawn in the run;
items name what their pixels are made of (``sample_key``) and can skip reading images."""
import os
import random

import numpy as np
import pytest
import torch

from dassl.data import DataManager, ImageBatch, build_data_loader
from dassl.data.data_manager import sample_seed
from dassl.utils import set_random_seed

from tests.engine.engine_toy import toy_cfg


def images_by_index(loader, epoch):
    """``{index: image}`` of one pass over ``loader`` in ``epoch``."""
    loader.dataset.set_epoch(epoch)
    return {int(i): img for batch in loader for i, img in zip(batch["index"], batch["img"])}


def train_loader(cfg, dm, batch_size, workers):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = workers
    return build_data_loader(cfg, sampler_type="RandomSampler", data_source=dm.dataset.train_x,
                             batch_size=batch_size, tfm=dm.tfm_train, is_train=True)


@pytest.fixture
def toy(toy_root, tmp_path):
    cfg = toy_cfg(toy_root, str(tmp_path / "out"))  # random_resized_crop + random_flip
    set_random_seed(cfg.SEED)
    return cfg, DataManager(cfg)


def test_augmentation_depends_on_seed_epoch_and_index_only(toy):
    cfg, dm = toy
    reference = images_by_index(train_loader(cfg, dm, 4, 0), epoch=0)
    assert len(reference) == 16  # 18 items, batch 4, the last incomplete batch dropped
    for batch_size, workers in ((1, 0), (7, 0), (3, 2)):
        torch.manual_seed(1234)  # whatever the run drew before
        other = images_by_index(train_loader(cfg, dm, batch_size, workers), epoch=0)
        for index in set(reference) & set(other):
            assert torch.equal(reference[index], other[index]), (batch_size, workers, index)
    # Another epoch, another augmentation; the same epoch again, the same one.
    later = images_by_index(train_loader(cfg, dm, 18, 0), epoch=1)
    assert all(not torch.equal(reference[i], later[i]) for i in reference)
    again = images_by_index(train_loader(cfg, dm, 18, 0), epoch=0)
    assert all(torch.equal(reference[i], again[i]) for i in reference)


def test_augmenting_draws_nothing_from_the_run_rngs(toy):
    cfg, dm = toy
    loader = train_loader(cfg, dm, 4, 0)
    iter(loader)  # the sampler's own generator is drawn from when iterating; not the point here
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    for i in range(len(loader.dataset)):
        loader.dataset[i]
    assert torch.equal(states[0], torch.get_rng_state())
    assert states[1] == random.getstate()
    assert np.array_equal(states[2], np.random.get_state()[1])


def test_the_augment_seed_is_the_run_seed_and_unseeded_runs_draw_one(toy, toy_root, tmp_path):
    cfg, dm = toy
    assert dm.train_loader_x.dataset.augment_seed == 1
    assert dm.test_loader.dataset.augment_seed is None  # evaluation transforms are deterministic
    unseeded = DataManager(toy_cfg(toy_root, str(tmp_path / "u"), SEED=-1)).train_loader_x.dataset
    other = DataManager(toy_cfg(toy_root, str(tmp_path / "v"), SEED=-1)).train_loader_x.dataset
    assert unseeded.augment_seed != other.augment_seed
    assert unseeded[0]["img"].shape == (3, 8, 8)
    assert sample_seed(1, 0, 5) != sample_seed(1, 1, 5) != sample_seed(2, 0, 5)


def test_sample_keys_name_file_transform_and_augmentation(toy, toy_root):
    cfg, dm = toy
    train, test = dm.train_loader_x.dataset, dm.test_loader.dataset
    assert train.describes_samples and test.describes_samples
    train.set_epoch(0)
    key0 = train.sample_key(3)
    train.set_epoch(1)
    assert train.sample_key(3) != key0  # another epoch: other pixels
    assert train.sample_group() == "EngineToyDataset/train/seed1/epoch1"
    assert test.sample_group() == "EngineToyDataset/eval"
    item = test[2]
    assert item["sample_key"] == test.sample_key(2) and item["sample_group"] == "EngineToyDataset/eval"
    # The same file under the train transform is something else.
    same_file = [i for i, d in enumerate(train.data_source) if d.impath == test.data_source[2].impath]
    assert all(train.sample_key(i) != test.sample_key(2) for i in same_file)
    # Touching the file changes its identity: the key follows the content, not the path alone.
    path = test.data_source[2].impath
    stat = os.stat(path)
    before = DataManager(cfg).test_loader.dataset.sample_key(2)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert DataManager(cfg).test_loader.dataset.sample_key(2) != before


def test_a_wrapper_can_skip_reading_images(toy):
    cfg, dm = toy
    test = dm.test_loader.dataset
    test.pixels_needed = False
    batch = next(iter(dm.test_loader))
    # No placeholder tensor: the batch's images are the items' identities, without pixels.
    images = batch["img"]
    assert isinstance(images, ImageBatch) and not images.has_pixels and len(images) == 5
    assert list(images.keys) == batch["sample_key"] and images.group == "EngineToyDataset/eval"
    with pytest.raises(RuntimeError, match="were not read"):
        images.pixels
    test.pixels_needed = True
    assert next(iter(dm.test_loader))["img"].shape == (5, 3, 8, 8)


def test_items_that_are_not_one_image_are_not_described(toy, toy_root, tmp_path):
    cfg = toy_cfg(toy_root, str(tmp_path), DATALOADER__K_TRANSFORMS=2)
    dm = DataManager(cfg)
    wrapper = dm.train_loader_x.dataset
    assert not wrapper.describes_samples and "sample_key" not in wrapper[0]
    with pytest.raises(ValueError, match="skip reading images"):
        wrapper.pixels_needed = False
    # Two views of one item are still a pure function of (seed, epoch, index).
    first = wrapper[4]["img"]
    assert torch.equal(first[0], wrapper[4]["img"][0]) and not torch.equal(first[0], first[1])
