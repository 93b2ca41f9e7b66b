use super::*;

#[test]
fn steal_is_the_eighth_column_of_the_cpu_line() {
    let stat = "cpu  100 0 50 800 10 5 5 30 7 0\ncpu0 50 0 25 400 5 2 3 15 0 0\n";
    assert_eq!(parse_steal(stat), Some((30, 1000)));
    assert_eq!(steal_percent((30, 1000), (60, 1100)), Some(30.0));
    assert_eq!(
        parse_steal("cpu  1 2 3\n"),
        None,
        "an old kernel without steal"
    );
    assert_eq!(steal_percent((0, 5), (0, 5)), None, "no time passed");
}

#[test]
fn cpu_ticks_skip_a_command_name_with_spaces_and_parens() {
    let stat = "4242 (remora (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    37 5 0 0 20 0 3 0 123 4567 890 18446744073709551615";
    assert_eq!(parse_cpu_ticks(stat), Some(42));
    assert_eq!(parse_user_system_ticks(stat), Some((37, 5)));
    assert_eq!(parse_ppid(stat), Some(1));
}

#[test]
fn the_kernel_share_is_system_ticks_over_all_ticks_between_readings() {
    assert_eq!(kernel_share((10, 20), (40, 110)), Some(0.75));
    assert_eq!(kernel_share((10, 20), (10, 20)), None, "no tick passed");
}

#[test]
fn status_lines_give_kib() {
    let status = "Name:\tnginx\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
    assert_eq!(parse_status_kib(status, "VmHWM"), Some(5120));
    assert_eq!(parse_status_kib(status, "VmRSS"), Some(4096));
    assert_eq!(parse_status_kib(status, "VmSwap"), None);
}
