use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    super::Args::command().debug_assert();
}
