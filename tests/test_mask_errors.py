"""The error split of experiments.mask_errors against a hand count."""

import numpy as np

from experiments.mask_errors import error_counts


def test_errors_split_into_outline_misses_and_false_by_a_hand_count():
    truth = np.zeros((8, 8), bool)
    truth[2:6, 2:6] = True  # 16 px; within 1 px of its outline: rows and columns 1-6 less the inner 2x2, 32 px
    pred = truth.copy()
    pred[1, 1] = True  # beside the outline: an outline error
    pred[3, 3] = False  # the inner 2x2: a miss farther inside
    pred[7, 7] = True  # 2 px out: a false positive farther outside
    pred[6, 2] = True  # beside the outline again
    counts = error_counts(pred, truth)
    assert counts == {"intersection": 15, "union": 19, "outline": 2, "misses": 1, "false": 1}
    assert counts["outline"] + counts["misses"] + counts["false"] == counts["union"] - counts["intersection"]
