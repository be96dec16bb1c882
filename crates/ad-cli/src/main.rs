//! The `ad` binary: see the `ad_cli` crate documentation, or `ad --help`.

fn main() -> std::process::ExitCode {
    ad_cli::main_from(std::env::args_os())
}
