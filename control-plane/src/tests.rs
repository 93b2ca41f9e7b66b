use std::ffi::OsStr;

use clap::CommandFactory;

#[test]
fn the_command_line_is_well_formed() {
    super::Cli::command().debug_assert();
}

#[test]
fn the_monitoring_port_with_debug_proxies_listens_on_loopback_by_default() {
    use clap::Parser;
    let cli = super::Cli::try_parse_from(["remora", "serve"]).expect("parse");
    let super::Command::Serve {
        monitoring_addr, ..
    } = cli.command
    else {
        panic!("not serve");
    };
    if std::env::var_os("REMORA_MONITORING_ADDR").is_none() {
        assert!(monitoring_addr.ip().is_loopback(), "{monitoring_addr}");
        assert_eq!(monitoring_addr.port(), 15014);
    }
}

#[test]
fn mesh_trace_sampling_does_not_share_the_proxys_variable() {
    let cli = super::Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve");
    let arg = serve
        .get_arguments()
        .find(|a| a.get_id() == "trace_sampling")
        .expect("--trace-sampling");
    assert_eq!(
        arg.get_env(),
        Some(OsStr::new("REMORA_MESH_TRACE_SAMPLING"))
    );
}

#[test]
fn the_proxies_sampling_variable_alone_is_not_ignored_without_a_word() {
    let warning = super::misplaced_sampling(false, true).expect("a warning");
    assert!(warning.contains("REMORA_MESH_TRACE_SAMPLING"), "{warning}");
    assert_eq!(super::misplaced_sampling(true, true), None);
    assert_eq!(super::misplaced_sampling(false, false), None);
}
