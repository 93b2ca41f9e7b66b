use super::*;

#[test]
fn a_short_detail_is_kept_as_it_is() {
    let detail = "route `r` of `reviews`: cluster `reviews|v3` is unknown";
    assert_eq!(truncate_detail(detail), detail);
    let exact = "x".repeat(MAX_NACK_DETAIL_BYTES);
    assert_eq!(truncate_detail(&exact), exact);
}

#[test]
fn a_long_detail_is_cut_within_the_bound_saying_how_much() {
    let detail = "y".repeat(MAX_NACK_DETAIL_BYTES + 1);
    let cut = truncate_detail(&detail);
    assert!(cut.len() <= MAX_NACK_DETAIL_BYTES, "{} bytes", cut.len());
    assert!(cut.starts_with("yyyy"));
    let kept = cut.find('…').unwrap();
    assert!(
        cut.ends_with(&format!("({} bytes cut)", detail.len() - kept)),
        "{}",
        &cut[kept..]
    );
}

#[test]
fn a_long_detail_is_cut_at_a_character_boundary() {
    // Four-byte characters: no cut point but every fourth byte.
    for pad in 0..4 {
        let detail = format!("{}{}", "a".repeat(pad), "🦀".repeat(MAX_NACK_DETAIL_BYTES));
        let cut = truncate_detail(&detail);
        assert!(cut.len() <= MAX_NACK_DETAIL_BYTES);
        assert!(cut.contains("bytes cut)"));
    }
}

#[test]
fn cut_never_splits_a_character() {
    assert_eq!(cut("abc", 10), "abc");
    assert_eq!(cut("abc", 2), "ab");
    // "é" is two bytes: a cut inside it keeps the character out.
    assert_eq!(cut("aé", 2), "a");
    assert_eq!(cut("🦀🦀", 7), "🦀");
    assert_eq!(cut("🦀", 0), "");
}
