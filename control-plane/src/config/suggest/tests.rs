use super::*;

#[test]
fn edit_distance_counts_insertions_deletions_substitutions() {
    assert_eq!(edit_distance("subset", "subsets"), 1);
    assert_eq!(edit_distance("hsots", "hosts"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

#[test]
fn closest_suggests_within_two_edits_only() {
    let known = ["host", "subsets", "trafficPolicy"];
    assert_eq!(closest("subset", known.iter().copied()), Some("subsets"));
    assert_eq!(closest("Host", known.iter().copied()), Some("host"));
    assert_eq!(closest("policy", known.iter().copied()), None);
    // A one-letter key is not "close" to every two-letter name.
    assert_eq!(closest("a", ["ab"].iter().copied()), None);
}
