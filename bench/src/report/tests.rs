use super::*;

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(vec![f64::NAN]), None);
    assert_eq!(median(Vec::new()), None);
}

fn sat(target: TargetId, round: usize, cpu: f64, kernel_share: f64) -> Measurement {
    Measurement {
        round,
        scenario: "h1-sat".to_owned(),
        target,
        rate: None,
        ok: 1000,
        errors: 0,
        missed: 0,
        rps: 1000.0,
        latency: Percentiles::default(),
        proxy_cpu_us: Some(cpu),
        proxy_kernel_share: Some(kernel_share),
        upstream_cpu_us: 10.0,
        rss_kib: vec![1024],
        peak_rss_kib: vec![1024],
        first_error: None,
    }
}

#[test]
fn the_cpu_split_gives_user_and_kernel_time_and_remora_kernel_against_nginx_total() {
    let scenario = crate::runner::scenarios(16)
        .into_iter()
        .find(|s| s.key == "h1-sat")
        .expect("h1-sat");
    let all = vec![
        sat(TargetId::Remora, 0, 30.0, 0.6),
        sat(TargetId::Nginx, 0, 24.0, 0.75),
        sat(TargetId::Remora, 1, 40.0, 0.5),
        sat(TargetId::Nginx, 1, 20.0, 0.8),
        sat(TargetId::Haproxy, 0, 20.0, 0.5),
        sat(TargetId::Haproxy, 1, 26.0, 0.5),
    ];
    let order = [TargetId::Remora, TargetId::Nginx, TargetId::Haproxy];
    let results = vec![aggregate(&scenario, "sat".to_owned(), &order, &all)];
    let remora = &results[0].rows[0];
    // Kernel µs per round: 18 and 20, median 19.
    assert_eq!(remora.proxy_kernel_us, Some(19.0));
    let md = markdown(&[], &results, &all, &[]);
    // Medians: remora 35 µs, of which 19 kernel; nginx 22, of which 17.
    assert!(md.contains("| remora | 35.0 | 16.0 | 19.0 | 54% |"), "{md}");
    assert!(md.contains("| nginx | 22.0 | 5.0 | 17.0 | 77% |"), "{md}");
    // Per round, remora kernel ÷ nginx total: 18/24 = 0.75 and 20/20 = 1;
    // remora user ÷ nginx user: 12/6 = 2 and 20/4 = 5.
    assert!(
        md.contains("kernel time alone is 0.88× nginx's whole CPU time"),
        "{md}"
    );
    assert!(md.contains("user-space time is 3.50× nginx's"), "{md}");
    // The upstream costs 10 µs: (10 + 20) ÷ 1.2 − 10 = 15 and
    // (10 + 26) ÷ 1.2 − 10 = 20, median 17.5, against 18 and 20 of kernel.
    assert!(
        md.contains("leaves remora 17.5 µs of CPU per request"),
        "{md}"
    );
    assert!(
        md.contains("remora's kernel time alone is 19.0 µs."),
        "{md}"
    );
}

#[test]
fn nginx_memory_is_master_plus_worker_and_a_pair_its_larger_proxy() {
    assert_eq!(mib(TargetId::Nginx, &[1024, 2048]), Some(3.0));
    assert_eq!(mib(TargetId::RemoraPair, &[1024, 2048]), Some(2.0));
    assert_eq!(mib(TargetId::Direct, &[]), None);
}
