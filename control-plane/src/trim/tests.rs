use super::*;

#[test]
fn trims_only_after_streams_fell_and_once_per_fall() {
    let mut peak = 0;
    assert!(!should_trim(&mut peak, 0), "nothing open, nothing left");
    assert!(!should_trim(&mut peak, 5000), "proxies arriving");
    assert!(should_trim(&mut peak, 4000), "a thousand left");
    assert!(!should_trim(&mut peak, 4000), "no one else left");
    assert!(should_trim(&mut peak, 0), "the rest left");
    assert!(!should_trim(&mut peak, 0), "once per fall");
    assert!(!should_trim(&mut peak, 10));
    assert!(should_trim(&mut peak, 9));
}

#[test]
fn trim_can_be_called_from_any_thread() {
    let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(trim)).collect();
    for t in threads {
        t.join().expect("trim does not panic");
    }
}
