use super::*;

#[test]
fn statuses_are_known_by_name_and_number() {
    assert_eq!(code("UNAVAILABLE"), Some(14));
    assert_eq!(code("resource-exhausted"), Some(8));
    assert_eq!(code("16"), Some(16));
    assert_eq!(code("17"), None);
    assert_eq!(code("SOMETIMES"), None);
}
