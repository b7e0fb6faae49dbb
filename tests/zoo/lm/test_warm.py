"""The warm-up (tests/zoo_warm.py) builds everything the LM tests use."""

from tests.zoo_warm import built_after


def test_the_fixtures_found_the_warm_up_s_builds(small_zoo, lm_family, badnets_expert, merge_aware_expert, amplified_expert,
                                                 safety_pair):
    assert not built_after(small_zoo), "built after the warm-up: add these to tests/zoo_warm.py"
