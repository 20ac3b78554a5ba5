import numpy as np
import pytest

from alface.faces.groups import GroupError, connected_groups, person_groups, renumber


def test_connected_groups_by_hand_and_independent_of_pair_order():
    pairs = np.array([[4, 5], [0, 2], [2, 3]])
    assert connected_groups(7, pairs).tolist() == [0, 1, 0, 0, 2, 2, 3]
    assert connected_groups(7, pairs[::-1, ::-1]).tolist() == [0, 1, 0, 0, 2, 2, 3]
    assert connected_groups(3, np.empty((0, 2))).tolist() == [0, 1, 2]
    assert connected_groups(0, np.empty((0, 2))).tolist() == []
    many = np.stack([np.zeros(300, np.int64), np.ones(300, np.int64)], axis=1)
    assert connected_groups(3, many).tolist() == [0, 0, 1]  # repeated pairs stay linked
    with pytest.raises(GroupError, match=r"outside \[0, 3\)"):
        connected_groups(3, np.array([[0, 3]]))


def test_renumber_in_order_of_first_occurrence():
    assert renumber(np.array([7, 7, 2, 9, 2])).tolist() == [0, 0, 1, 2, 1]


def test_person_groups_join_tracks_through_near_duplicates():
    # Two tracks (0: rows 0-2, 1: rows 3-4) and a photo (row 5) with no track; row 2 and
    # row 3 are near-duplicates, and so are row 5 and row 6.
    tracks = np.array([0, 0, 0, 1, 1, -1, -1, -1])
    dups = np.array([-1, -1, 8, 8, -1, 3, 3, -1])
    assert person_groups(tracks, dups).tolist() == [0, 0, 0, 0, 0, 1, 1, 2]
    assert person_groups(tracks).tolist() == [0, 0, 0, 1, 1, 2, 3, 4]
    with pytest.raises(GroupError, match="at least one labeling"):
        person_groups()
    with pytest.raises(GroupError, match=r"shape \(8,\)"):
        person_groups(tracks, dups[:5])
