"""``Datum`` and ``DatasetBase``: the data containers every dataset reader builds.

Behaviour follows upstream Dassl (``dassl/data/datasets/base_dataset.py``) with one deliberate change:
``Datum`` does not ``stat`` its file at construction (an ImageNet index has 1.28M
entries); a missing image fails when it is read, with its path in the error.

The class path ``dassl.data.datasets.base_dataset.Datum`` and its private attribute
names are kept so that few-shot pickles written by upstream Dassl unpickle as-is.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union


class Datum:
    """One labelled sample: image path, label, domain and class name."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    # Upstream pickles carry the attributes in ``__dict__``; ``__slots__`` objects
    # restore them through ``__setstate__``.
    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple):  # (dict_state, slots_state) protocol form
            merged = {}
            for part in state:
                if part:
                    merged.update(part)
            state = merged
        for name in self.__slots__:
            setattr(self, name, state.get(name, "" if name in ("_impath", "_classname") else 0))

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self._impath, self._label, self._domain, self._classname))

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, "
            f"domain={self._domain}, classname={self._classname!r})"
        )


DataSource = List[Datum]


class DatasetBase:
    """A dataset: ``train_x`` (labelled train), ``train_u``, ``val`` and ``test`` lists.

    ``num_classes``, ``lab2cname`` and ``classnames`` derive from ``train_x`` as
    upstream. Test-only datasets pass ``train_x=None`` and the label space is taken
    from ``test`` (upstream passed the test list as ``train_x`` and built a shuffled
    training loader over it).
    """

    dataset_dir = ""  # the directory where the dataset is stored
    domains: List[str] = []  # string names of all domains

    def __init__(
        self,
        train_x: Optional[DataSource] = None,
        train_u: Optional[DataSource] = None,
        val: Optional[DataSource] = None,
        test: Optional[DataSource] = None,
    ) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        label_source = train_x if train_x else test
        if not label_source:
            raise ValueError(f"{type(self).__name__}: both train_x and test are empty")
        self._num_classes = self.get_num_classes(label_source)
        self._lab2cname, self._classnames = self.get_lab2cname(label_source)

    @property
    def train_x(self) -> Optional[DataSource]:
        return self._train_x

    @property
    def train_u(self) -> Optional[DataSource]:
        return self._train_u

    @property
    def val(self) -> Optional[DataSource]:
        return self._val

    @property
    def test(self) -> Optional[DataSource]:
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def is_test_only(self) -> bool:
        """True for evaluation-only datasets (ImageNet-V2/-Sketch/-A/-R)."""
        return not self._train_x

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """Number of classes = max label + 1 (upstream semantics)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]):
        """Return ``({label: classname}, [classnames ordered by label])``."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains) -> None:
        for domain in list(source_domains) + list(target_domains):
            if domain not in self.domains:
                raise ValueError(
                    f"Input domain must belong to {self.domains}, but got [{domain}]"
                )

    def generate_fewshot_dataset(
        self, *data_sources: DataSource, num_shots: int = -1, repeat: bool = False
    ) -> Union[DataSource, List[DataSource]]:
        """Sample ``num_shots`` items per label from each source (upstream ``DatasetBase.generate_fewshot_dataset``).

        This reproduces upstream Dassl's use of Python's global ``random`` exactly:
        labels in order of first appearance, ``random.sample(items, K)`` when a label
        has at least K items, otherwise all items (no RNG call) or
        ``random.choices`` when ``repeat``. Same seed and same source order give the
        same split as upstream.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else list(data_sources)

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset: DataSource = []
            for items in tracker.values():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source: Sequence[Datum]) -> Dict[int, DataSource]:
        """Group items by label; keys in order of first appearance."""
        output: Dict[int, DataSource] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source: Sequence[Datum]) -> Dict[int, DataSource]:
        output: Dict[int, DataSource] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
