use super::*;

fn counts(s: &WeightedSchedule, n: usize, k: usize) -> Vec<usize> {
    let mut c = vec![0; k];
    for _ in 0..n {
        c[s.pick()] += 1;
    }
    c
}

#[test]
fn ninety_ten_is_exact_in_every_window_of_ten() {
    let s = WeightedSchedule::new(&[90, 10]).unwrap();
    for _ in 0..100 {
        assert_eq!(counts(&s, 10, 2), vec![9, 1]);
    }
}

#[test]
fn weights_are_shares_of_their_sum() {
    let s = WeightedSchedule::new(&[1, 1, 2]).unwrap();
    assert_eq!(counts(&s, 400, 3), vec![100, 100, 200]);
}

#[test]
fn smooth_spreads_the_minority() {
    // 80/20 must not send four in a row to the minority nor bunch them.
    let s = WeightedSchedule::new(&[80, 20]).unwrap();
    let seq: Vec<usize> = (0..5).map(|_| s.pick()).collect();
    assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 1);
}

#[test]
fn zero_weight_gets_nothing_and_all_zero_is_invalid() {
    let s = WeightedSchedule::new(&[0, 5]).unwrap();
    assert_eq!(counts(&s, 50, 2), vec![0, 50]);
    assert!(WeightedSchedule::new(&[0, 0]).is_none());
    assert!(WeightedSchedule::new(&[]).is_none());
}

#[test]
fn huge_coprime_weights_are_scaled_not_rejected() {
    let s = WeightedSchedule::new(&[999_983, 1_000_003, 0]).unwrap();
    assert!(s.order.len() as u64 <= MAX_PERIOD + 2);
    let c = counts(&s, 10_000, 3);
    assert_eq!(c[2], 0);
    assert!((c[0] as i64 - c[1] as i64).abs() < 20, "{c:?}");
}
