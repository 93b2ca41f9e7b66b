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
