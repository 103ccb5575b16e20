"""One function decides a run's CPU threads, locally and under SLURM (issue 22)."""
import pytest

from dassl.cpu_allocation import allocated_cpus, capped_workers, decide_threads


@pytest.mark.parametrize("environ, expected", [
    ({}, (8, "the affinity mask")),
    ({"SLURM_CPUS_PER_TASK": "2", "SLURM_CPUS_ON_NODE": "4"}, (2, "SLURM_CPUS_PER_TASK=2")),
    ({"SLURM_CPUS_ON_NODE": "3", "SLURM_JOB_CPUS_PER_NODE": "6"}, (3, "SLURM_CPUS_ON_NODE=3")),
    ({"SLURM_JOB_CPUS_PER_NODE": "4(x2),2"}, (4, "SLURM_JOB_CPUS_PER_NODE=4(x2),2")),
    ({"SLURM_CPUS_PER_TASK": "16"}, (8, "the affinity mask, narrower than SLURM_CPUS_PER_TASK=16")),
    ({"SLURM_CPUS_PER_TASK": "", "SLURM_CPUS_ON_NODE": "junk"}, (8, "the affinity mask")),
])
def test_the_allocation_comes_from_slurm_else_the_affinity_mask(environ, expected):
    found = allocated_cpus(environ, affinity=8)
    assert (found.count, found.source) == expected


def test_threads_follow_the_flag_then_omp_num_threads_then_the_allocation():
    slurm = {"SLURM_CPUS_ON_NODE": "4"}
    assert decide_threads(3, 2, {"OMP_NUM_THREADS": "5", **slurm}, affinity=8).count == 3
    assert decide_threads(None, 2, {"OMP_NUM_THREADS": "5", **slurm}, affinity=8).source == "OMP_NUM_THREADS"
    shared = decide_threads(None, 2, slurm, affinity=8)
    assert (shared.count, shared.source) == (2, "SLURM_CPUS_ON_NODE=4, shared by 2 runs")
    assert decide_threads(None, 16, {}, affinity=8).count == 1
    with pytest.raises(ValueError, match="--threads 0"):
        decide_threads(0, 1, {}, affinity=8)


def test_loader_workers_are_capped_by_the_allocation():
    assert capped_workers(8, {"SLURM_CPUS_PER_TASK": "2"}, affinity=64) == 2
    assert capped_workers(1, {"SLURM_CPUS_PER_TASK": "2"}, affinity=64) == 1
    assert capped_workers(0, {}, affinity=64) == 0
